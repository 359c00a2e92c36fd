//! Port forwarding through the instance's network namespace: `direct-tcpip` (`ssh -L`) connects
//! from inside it, `tcpip-forward` (`ssh -R`) listens inside it. The sockets are made by
//! `sandbox::connect_in_netns` / `bind_in_netns` (a dedicated std thread that joined the
//! namespace; called here from `spawn_blocking`), then driven by tokio like any socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use russh::server::{ChannelOpenHandle, Handle, Msg};
use russh::{Channel, ChannelOpenFailure};

use super::RouteCtx;
use super::instance_fs::InstanceRoot;

/// Resolves a forwarding host the way the instance would for the common cases: literals,
/// `localhost`, and names in the instance's /etc/hosts.
async fn resolve(ctx: &Arc<RouteCtx>, host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if h.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if h.eq_ignore_ascii_case("ip6-localhost") {
        return Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    let (pid, start, h) = (ctx.route.init_pid, ctx.route.start_time, h.to_string());
    tokio::task::spawn_blocking(move || {
        let root = InstanceRoot::open(pid, start).ok()?;
        let hosts = root.read("/etc/hosts", 1 << 20).ok()?;
        hosts_lookup(&String::from_utf8_lossy(&hosts), &h)
    })
    .await
    .ok()
    .flatten()
}

fn hosts_lookup(hosts: &str, name: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|l| {
        let l = l.split('#').next()?;
        let mut f = l.split_whitespace();
        let ip: IpAddr = f.next()?.parse().ok()?;
        f.any(|n| n.eq_ignore_ascii_case(name)).then_some(ip)
    })
}

/// `direct-tcpip`: connect inside the instance, then accept the channel and relay.
pub(crate) async fn direct(
    ctx: Arc<RouteCtx>,
    host: String,
    port: u32,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
) {
    let connected = async {
        let ip = resolve(&ctx, &host)
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))?;
        let port = u16::try_from(port)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad port"))?;
        ctx.connector
            .connect(SocketAddr::new(ip, port))
            .await
            .map_err(io::Error::other)
    };
    let stream = match connected.await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(instance = %ctx.route.instance_id, host, port, error = %e, "direct-tcpip refused");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return;
        }
    };
    reply.accept().await;
    relay(channel, stream).await;
}

/// `tcpip-forward`: listen inside the instance (loopback, as sshd's `GatewayPorts no`); each
/// connection opens a `forwarded-tcpip` channel to the client.
pub(crate) async fn listen(
    ctx: &Arc<RouteCtx>,
    address: &str,
    port: u16,
    handle: Handle,
) -> io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let ip = if address.contains(':') || address == "::1" || address == "ip6-localhost" {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let listener = ctx
        .connector
        .listen(SocketAddr::new(ip, port))
        .await
        .map_err(io::Error::other)?;
    let bound = listener.local_addr()?.port();
    let address = address.to_string();
    let task = tokio::spawn(async move {
        while let Ok((sock, peer)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            let (h, a) = (handle.clone(), address.clone());
            tokio::spawn(async move {
                match h
                    .channel_open_forwarded_tcpip(
                        a,
                        bound as u32,
                        peer.ip().to_string(),
                        peer.port() as u32,
                    )
                    .await
                {
                    Ok(ch) => relay(ch, sock).await,
                    Err(_) => drop(sock),
                }
            });
        }
    });
    Ok((bound, task))
}

async fn relay(channel: Channel<Msg>, mut sock: tokio::net::TcpStream) {
    let mut stream = channel.into_stream();
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut sock).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_hosts() {
        let h = "127.0.0.1 localhost\n172.31.0.4\tip-172-31-0-4 web # me\n";
        assert_eq!(hosts_lookup(h, "web"), Some("172.31.0.4".parse().unwrap()));
        assert_eq!(hosts_lookup(h, "me"), None);
    }
}
