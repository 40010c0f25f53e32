//! A TCP forwarder between a service and its store that a drill can cut (every connection
//! dropped, new ones refused: a network partition) and heal. With several upstreams it is a
//! layer-4 load balancer as a cloud's or kube-proxy's: each new connection goes to the next
//! upstream that accepts it.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The forwarder.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> anyhow::Result<Proxy> {
        Proxy::balance(vec![upstream]).await
    }

    /// Listens on a free loopback port and spreads connections over `upstreams`, round-robin,
    /// skipping those that refuse.
    pub(crate) async fn balance(upstreams: Vec<SocketAddr>) -> anyhow::Result<Proxy> {
        anyhow::ensure!(!upstreams.is_empty(), "a forwarder needs an upstream");
        let upstreams = Arc::new(upstreams);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (cut, conns) = (cut.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(down);
                        continue;
                    }
                    let (upstreams, next) = (upstreams.clone(), next.clone());
                    let task = tokio::spawn(async move {
                        let n = upstreams.len();
                        let first = next.fetch_add(1, Ordering::Relaxed);
                        for i in 0..n {
                            if let Ok(mut up) = TcpStream::connect(upstreams[(first + i) % n]).await
                            {
                                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                                return;
                            }
                        }
                    });
                    let mut all = conns.lock().expect("proxy lock");
                    all.retain(|t| !t.is_finished());
                    all.push(task);
                }
            })
        };
        Ok(Proxy {
            addr,
            cut,
            conns,
            accept,
        })
    }

    /// The partition: every open connection dropped, new ones refused.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self.conns.lock().expect("proxy lock").drain(..) {
            t.abort();
        }
    }

    /// The network back.
    pub(crate) fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.conns.lock().expect("proxy lock").drain(..) {
            t.abort();
        }
    }
}

/// The URL with its host and port replaced by `addr`, and the address it named (its port
/// `default_port` when it gives none).
pub(crate) fn through(
    url: &str,
    addr: std::net::SocketAddr,
    default_port: u16,
) -> anyhow::Result<(String, std::net::SocketAddr)> {
    let (scheme, rest) = url
        .split_once("://")
        .context("a URL with a scheme (postgres://, redis://)")?;
    let (auth, hostpath) = match rest.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), rest),
    };
    let (hostport, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&hostport)?
        .next()
        .context("resolving the host")?;
    Ok((format!("{scheme}://{auth}{addr}/{path}"), upstream))
}
