//! A TCP proxy in front of a PBX's ARI, for faults on the way: it can hold what the
//! client sends for a while before passing it on (an originate that the PBX acts on
//! after the client gave up waiting), and cut every connection at once (a lost
//! WebSocket). Bytes keep their order in both directions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub struct AriProxy {
    pub url: String,
    delay_ms: Arc<AtomicU64>,
    cut: Arc<Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl AriProxy {
    /// Listens on a free loopback port and forwards to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(Notify::new());
        let server = {
            let (delay_ms, cut) = (delay_ms.clone(), cut.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(upstream) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    tokio::spawn(pipe(client, upstream, delay_ms.clone(), cut.clone()));
                }
            })
        };
        Self {
            url,
            delay_ms,
            cut,
            server,
        }
    }

    /// What clients send from now on reaches the PBX `delay` later.
    pub fn delay_requests(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Closes every open connection (new ones are still accepted).
    pub fn cut_all(&self) {
        self.cut.notify_waiters();
    }
}

impl Drop for AriProxy {
    fn drop(&mut self) {
        self.server.abort();
        self.cut.notify_waiters();
    }
}

async fn pipe(client: TcpStream, upstream: TcpStream, delay_ms: Arc<AtomicU64>, cut: Arc<Notify>) {
    // Registered now, not at the first poll: a cut right after the accept reaches it.
    let cut = cut.notified();
    tokio::pin!(cut);
    cut.as_mut().enable();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    // Client to PBX through a queue, each chunk stamped with when it may go on.
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
                    if chunks
                        .send((Instant::now() + delay, buffer[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    // Returns the PBX-bound half unclosed: dropping it would half-close the connection,
    // and a server may take that for a client that gave up and drop the request it is
    // acting on. It closes with the rest when the PBX's side ends.
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if upstream_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        upstream_write
    };
    let back = async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    let both = async {
        let (((), open), ()) = tokio::join!(async { tokio::join!(reader, writer) }, back);
        drop(open);
    };
    tokio::select! {
        () = both => {}
        () = cut => {}
    }
}
