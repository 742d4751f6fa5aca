//! A TCP proxy in front of the local AWS-protocol server that can take the
//! endpoint away (connections cut and refused, as when it stops) or
//! throttle it (every request answered `503` with a throttling error),
//! then give it back with its state intact.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    /// Open connections are cut; new ones are closed at once.
    Down = 1,
    /// Every request gets `503` with a `ThrottlingException`/`SlowDown`.
    Throttle = 2,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let m = mode.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let m = m.clone();
                std::thread::spawn(move || serve(conn, upstream, m));
            }
        });
        FaultProxy { addr, mode }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

fn current(mode: &AtomicU8) -> u8 {
    mode.load(Ordering::SeqCst)
}

fn serve(client: TcpStream, upstream: SocketAddr, mode: Arc<AtomicU8>) {
    match current(&mode) {
        m if m == Mode::Down as u8 => {
            let _ = client.shutdown(Shutdown::Both);
        }
        m if m == Mode::Throttle as u8 => throttle(client),
        _ => {
            let Ok(up) = TcpStream::connect(upstream) else { return };
            let (c2, u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            let m2 = mode.clone();
            let t = std::thread::spawn(move || pipe(c2, u2, &m2));
            pipe(up, client, &mode);
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` until either side closes or the mode leaves
/// `Pass` (then both are cut).
fn pipe(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8) {
    from.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if current(mode) != Mode::Pass as u8 {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Reads one request (head and body) and answers it with a throttling
/// error, the way the services do when a caller exceeds its rate.
fn throttle(mut client: TcpStream) {
    client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..h]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()))
                .unwrap_or(0);
            if got.len() >= h + 4 + len {
                break;
            }
        }
    }
    let body = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nx-amzn-ErrorType: ThrottlingException\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(head.as_bytes());
    let _ = client.write_all(body);
    let _ = client.shutdown(Shutdown::Both);
}
