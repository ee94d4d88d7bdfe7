//! Waiting for the Discord gateway: a TCP probe of its host and port, retried with
//! back-off, so that an unreachable gateway is reported once instead of every 5 s.

use crate::clock::SharedClock;
use crate::gateway::GatewayHealth;
use tokio_util::sync::CancellationToken;

/// First wait before trying an unreachable gateway again; it doubles up to the maximum.
const GATEWAY_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(5);
const GATEWAY_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);
/// How long one reachability probe of the gateway may take.
const GATEWAY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a TCP connection to the gateway's host and port can be opened. serenity retries
/// an unreachable gateway every 5 s with a warning each time; probing first lets the bot say
/// it once and back off.
async fn probe_gateway(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?;
    let port = parsed
        .port_or_known_default()
        .or(match parsed.scheme() {
            "wss" => Some(443),
            "ws" => Some(80),
            _ => None,
        })
        .ok_or_else(|| format!("{url} has no port"))?;
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(GATEWAY_PROBE_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot connect to the Discord gateway at {url}: {e}"
        )),
        Err(_) => Err(format!(
            "the Discord gateway at {url} did not answer within {}s",
            GATEWAY_PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Waits until the gateway is reachable (logging the first failure as an error, backing
/// off between tries); `false` when `shutdown` came first.
pub(super) async fn await_gateway(
    url: &str,
    health: &GatewayHealth,
    clock: &SharedClock,
    shutdown: &CancellationToken,
) -> bool {
    let mut wait = GATEWAY_RETRY_FIRST;
    let mut failed = false;
    loop {
        let probed = tokio::select! {
            probed = probe_gateway(url) => probed,
            _ = shutdown.cancelled() => return false,
        };
        match probed {
            Ok(()) => {
                if failed {
                    tracing::info!(%url, "the Discord gateway is reachable again");
                }
                return true;
            }
            Err(reason) => {
                if !failed {
                    tracing::error!(
                        %reason,
                        "slash commands unavailable; alerts still go out; retrying with back-off"
                    );
                } else {
                    tracing::debug!(%reason, retry_in = ?wait, "gateway still unreachable");
                }
                failed = true;
                health.set_unavailable(clock.now(), reason);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return false,
        }
        wait = (wait * 2).min(GATEWAY_RETRY_MAX);
    }
}
