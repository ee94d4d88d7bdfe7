//! The client's rate limit, `cbs.max_requests_per_second`: a [`Pace`] spaces requests
//! evenly on tokio's clock, shared by every clone of a client.

use std::num::NonZeroU32;
use std::time::Duration;

/// Tokio's clock for governor, so that the rate limit follows tokio time (and a test's
/// paused time) like every other wait in the program.
#[derive(Clone, Debug)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A ceiling on the request rate: requests evenly spaced, no bursts, so that no window of
/// one second ever holds more than the configured number.
pub(super) struct Pace {
    limiter: governor::RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        TokioClock,
        governor::middleware::NoOpMiddleware<Duration>,
    >,
}

impl Pace {
    pub(super) fn new(per_second: NonZeroU32) -> Pace {
        // Rounded up: a period a nanosecond short would fit one request too many into a
        // second.
        let period_ns = 1_000_000_000u64.div_ceil(u64::from(per_second.get()));
        let quota = governor::Quota::with_period(Duration::from_nanos(period_ns))
            .expect("the period is at least 100 µs");
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        Pace {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock),
        }
    }

    /// Returns once the next request may go.
    pub(super) async fn wait(&self) {
        use governor::clock::Clock;
        while let Err(not_until) = self.limiter.check() {
            let now = self.limiter.clock().now();
            tokio::time::sleep(not_until.wait_time_from(now)).await;
        }
    }
}
