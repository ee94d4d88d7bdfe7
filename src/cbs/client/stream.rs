//! Reading a reply as it arrives, for the one call whose reply can be tens of MiB: a real
//! `2/ListUsers.do` carries kilobytes of fields per user, so ten thousand users make a
//! reply of about 22 MB. The chunks go, as they come, to a decoder on a blocking thread
//! (serde reads from a `std::io::Read`), so neither the whole reply nor a
//! `serde_json::Value` of it is ever held: memory stays at a few chunks and what the
//! decoder keeps.

use super::super::model::{self, SNIPPET_MAX_CHARS};
use super::{CbsClient, CbsError};
use std::io::Read;
use tokio::sync::mpsc;

/// Bytes of a reply's head its snippet is made from (a UTF-8 char is at most 4 bytes).
const SNIPPET_MAX_BYTES: usize = 4 * SNIPPET_MAX_CHARS;
/// Chunks on their way to the decoder: the reader waits while it is behind.
const CHUNKS_IN_FLIGHT: usize = 4;

/// How a streamed reply turned out: the decoder's answer, and the redacted head of the
/// reply for a snippet should the decoder have refused it.
pub(super) struct Streamed<T> {
    pub(super) decoded: T,
    pub(super) head: String,
}

impl CbsClient {
    /// POSTs `body` to `url` and feeds the 2xx reply, as it arrives, to `decode` on a
    /// blocking thread. A reply longer than `max_bytes` is [`CbsError::TooLarge`] about
    /// `what`, with `advice`; errors before the body are as [`CbsClient::post_json`]'s.
    pub(super) async fn post_json_streamed<B, T>(
        &self,
        url: reqwest::Url,
        body: &B,
        limit: (usize, &'static str, &'static str),
        decode: impl FnOnce(&mut dyn Read) -> T + Send + 'static,
    ) -> Result<Streamed<T>, CbsError>
    where
        B: serde::Serialize,
        T: Send + 'static,
    {
        let (max_bytes, what, advice) = limit;
        let (mut response, _slot) = self.send_json(url, body).await?;
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let decoder = tokio::task::spawn_blocking(move || {
            let mut reader = std::io::BufReader::new(ChunkReader {
                rx,
                chunk: Default::default(),
            });
            decode(&mut reader)
        });
        let mut head = Vec::new();
        let mut read = 0usize;
        // Dropping `tx` (at the end, or on an error) ends the decoder's input.
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            read += chunk.len();
            if read > max_bytes {
                return Err(CbsError::TooLarge {
                    server: self.inner.server_name.clone(),
                    what,
                    limit_bytes: max_bytes,
                    advice,
                });
            }
            if head.len() < SNIPPET_MAX_BYTES {
                head.extend_from_slice(&chunk[..chunk.len().min(SNIPPET_MAX_BYTES - head.len())]);
            }
            if tx.send(Vec::from(chunk)).await.is_err() {
                // The decoder has stopped (it refused the reply): the rest is not needed.
                break;
            }
        }
        drop(tx);
        let decoded = decoder.await.map_err(|e| CbsError::Decode {
            server: self.inner.server_name.clone(),
            reason: format!("the reply's decoder failed: {e}"),
            snippet: String::new(),
        })?;
        let head = self.redact(String::from_utf8_lossy(&head).into_owned());
        Ok(Streamed {
            decoded,
            head: model::snippet(&head, SNIPPET_MAX_CHARS),
        })
    }
}

/// The chunks of a reply as one `Read`: blocks for the next chunk; the end of the input
/// (the sender dropped) is the end of the reply.
struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    /// The chunk being read, and how much of it has been.
    chunk: (Vec<u8>, usize),
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.1 >= self.chunk.0.len() {
            match self.rx.blocking_recv() {
                Some(next) => self.chunk = (next, 0),
                None => return Ok(0),
            }
        }
        let (chunk, at) = &mut self.chunk;
        let n = buf.len().min(chunk.len() - *at);
        buf[..n].copy_from_slice(&chunk[*at..*at + n]);
        *at += n;
        Ok(n)
    }
}
