//! A `2/ListUsers.do` reply of a real size, from a raw HTTP server on loopback: a real
//! listing carries kilobytes of fields per user, so 10,000 users make about 21 MB, more
//! than a restore-job reply may be. The client reads it as it arrives (never the whole
//! reply, nor a JSON tree of it, in memory) up to its own bound, past which the error
//! is about the listing and no outage.
//!
//! One test in a binary of its own: it measures the whole process's peak memory, which
//! other tests running beside it would disturb.

use restorewatch::cbs::{CbsClient, CbsClientConfig, CbsError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes live in the process, and the peak since the last [`peak_reset`].
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts measuring the peak; returns the bytes live now.
fn peak_reset() -> isize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

fn client(url: &str) -> CbsClient {
    CbsClient::new(CbsClientConfig {
        url: url.parse().unwrap(),
        server_name: "raw".into(),
        sys_user: "api".into(),
        sys_pwd: "pw".to_owned().into(),
        timezone: restorewatch::tz::Tz::UTC,
        request_timeout: std::time::Duration::from_secs(60),
        ca_cert: None,
    })
    .unwrap()
}

/// Serves `body` as the one 200 reply to the first request; answers how many bytes of it
/// went out before the client stopped reading.
async fn serve_once(body: Vec<u8>) -> (String, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut sent = 0;
        for chunk in body.chunks(64 * 1024) {
            if socket.write_all(chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    (url, server)
}

/// A listing of `users` users whose items carry `filler` bytes of other fields each.
fn listing(users: usize, filler: usize) -> Vec<u8> {
    let pad = "x".repeat(filler);
    let mut body = String::from(r#"{"Status":"OK","User":["#);
    for i in 0..users {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"ID":"{i}","LoginName":"user{i:05}","Owner":"r{}","Notes":"{pad}","Quota":[1,{{"a":null}}]}}"#,
            i % 7
        ));
    }
    body.push_str("]}");
    body.into_bytes()
}

#[tokio::test]
async fn a_user_listing_is_read_as_it_arrives_up_to_its_bound() {
    // 10,000 users, about 2 KB each: every user is listed, and the process never holds
    // the reply (the server's copy aside).
    let body = listing(10_000, 2_100);
    let size = body.len();
    assert!(size > 21_000_000, "{size}");
    let (url, server) = serve_once(body).await;
    let before = peak_reset();
    let users = client(&url)
        .list_users("")
        .await
        .expect("the listing is read");
    let grew = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(users.len(), 10_000);
    let last = &users[9_999];
    assert_eq!(
        (last.login.as_str(), last.owner.as_str()),
        ("user09999", "r3")
    );
    assert_eq!(server.await.unwrap(), size);
    assert!(
        grew < 8 * 1024 * 1024,
        "the peak grew by {grew} bytes for a {size}-byte listing"
    );

    // Past the listing's bound (64 MiB): an error about the listing that says what to do,
    // and no outage (the server answered); the client stops reading.
    let (url, server) = serve_once(listing(100, 700_000)).await;
    let error = client(&url)
        .list_users("")
        .await
        .expect_err("past the bound");
    let text = error.to_string();
    assert!(
        matches!(error, CbsError::TooLarge { .. })
            && text.contains("the user listing is larger than 64 MiB")
            && text.contains("discover.owners"),
        "{text}"
    );
    assert_eq!(error.outage_reason(), None);
    assert!(server.await.unwrap() < 68 * 1024 * 1024, "stopped reading");
}
