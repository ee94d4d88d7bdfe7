//! Faults the simulator can inject, so tests and the demo see what a real CBS does on a bad
//! day: slow answers, HTTP 500, bodies that are not JSON, `Status: Error` replies, and
//! per-user failures. Random faults come from a seeded generator, so a test that sets the
//! same seed sees the same sequence of faults for the same sequence of requests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Server-wide fault knobs. The ratios are probabilities per request (0.0..=1.0) and are
/// drawn in this order: HTTP 500, malformed body, API error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Added to every request before it is answered.
    pub latency: Duration,
    pub http_500_ratio: f64,
    pub malformed_ratio: f64,
    pub api_error_ratio: f64,
    /// Seed of the dice: the same seed gives the same faults for the same requests.
    pub seed: u64,
}

/// A fault that hits every request for one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginFault {
    /// Answer HTTP 500.
    Http500,
    /// Answer `Status: Error` with this message.
    ApiError(String),
    /// Answer as if the user did not exist.
    NotFound,
    /// Answer HTTP 200 with exactly this body (say, a proxy page echoing the request).
    RawBody(String),
}

/// What the dice decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    None,
    Http500,
    /// Which of the malformed bodies to send.
    Malformed(usize),
    ApiError,
}

/// Bodies that are not the documented envelope, as proxies and half-dead servers send them.
pub const MALFORMED_BODIES: [&str; 4] = [
    "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
    r#"{"Status":"OK","Data":[{"ID":"2024-06-26-13-25-13","BackupSetID":"#,
    "",
    r#"["Status","OK"]"#,
];

/// The seeded random source behind [`Faults`].
#[derive(Debug)]
pub struct FaultDice {
    faults: Faults,
    rng: StdRng,
}

impl FaultDice {
    pub fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        Self { faults, rng }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Decides the fault for the next request. Draws nothing when all ratios are zero, so
    /// turning faults on later starts the sequence from the seed.
    pub fn roll(&mut self) -> Injected {
        let f = &self.faults;
        if f.http_500_ratio <= 0.0 && f.malformed_ratio <= 0.0 && f.api_error_ratio <= 0.0 {
            return Injected::None;
        }
        let r: f64 = self.rng.gen();
        if r < f.http_500_ratio {
            Injected::Http500
        } else if r < f.http_500_ratio + f.malformed_ratio {
            Injected::Malformed(self.rng.gen_range(0..MALFORMED_BODIES.len()))
        } else if r < f.http_500_ratio + f.malformed_ratio + f.api_error_ratio {
            Injected::ApiError
        } else {
            Injected::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rolls(faults: &Faults, n: usize) -> Vec<Injected> {
        let mut dice = FaultDice::new(faults.clone());
        (0..n).map(|_| dice.roll()).collect()
    }

    #[test]
    fn same_seed_same_faults() {
        let f = Faults {
            http_500_ratio: 0.2,
            malformed_ratio: 0.2,
            api_error_ratio: 0.2,
            seed: 7,
            ..Faults::default()
        };
        assert_eq!(rolls(&f, 200), rolls(&f, 200));
        let other = Faults {
            seed: 8,
            ..f.clone()
        };
        assert_ne!(rolls(&f, 200), rolls(&other, 200));
    }

    #[test]
    fn ratios_are_roughly_kept() {
        let f = Faults {
            http_500_ratio: 0.25,
            malformed_ratio: 0.25,
            seed: 1,
            ..Faults::default()
        };
        let r = rolls(&f, 4000);
        let count = |pred: fn(&Injected) -> bool| r.iter().filter(|i| pred(i)).count();
        let http = count(|i| *i == Injected::Http500);
        let bad = count(|i| matches!(i, Injected::Malformed(_)));
        assert!((800..1200).contains(&http), "{http}");
        assert!((800..1200).contains(&bad), "{bad}");
        assert_eq!(count(|i| *i == Injected::ApiError), 0);
    }

    #[test]
    fn certain_and_impossible() {
        let always = Faults {
            http_500_ratio: 1.0,
            ..Faults::default()
        };
        assert!(rolls(&always, 50).iter().all(|i| *i == Injected::Http500));
        assert!(rolls(&Faults::default(), 50)
            .iter()
            .all(|i| *i == Injected::None));
    }

    #[test]
    fn malformed_bodies_do_not_decode() {
        use crate::cbs::model::{decode_reply, DecodeContext, ReplyError};
        let cx = DecodeContext {
            server: "sim",
            tz: crate::tz::Tz::UTC,
            login_name: "u",
            owner: "",
            date: chrono::NaiveDate::from_ymd_opt(2024, 6, 26).unwrap(),
        };
        for body in MALFORMED_BODIES {
            assert!(
                matches!(decode_reply(body, &cx), Err(ReplyError::Malformed { .. })),
                "{body:?}"
            );
        }
    }
}
