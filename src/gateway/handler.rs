//! The russh `Handler` of one connection: authentication against the instance, answers to
//! channel requests (russh needs `channel_success` from inside each callback), and hand-off of
//! every channel to the task that owns it (`session::run`, `forward`). No slow work here: file
//! reads go to `spawn_blocking`, processes and sockets to their own tasks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::{Algorithm, HashAlg};
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};

use super::RouteCtx;
use super::authkeys::{self, KeyOptions};
use super::instance_fs::{InstanceRoot, InstanceUser, find_user};
use super::timeline::Timeline;
use crate::sandbox::passwd;

/// Who logged in, and with which key options.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub user: InstanceUser,
    pub options: KeyOptions,
    /// The same user with gid and groups (from the instance's /etc/group), handed to the
    /// session helper: passwd and group are read once per login, not per channel.
    pub account: crate::sandbox::passwd::User,
    /// gid of the instance's `tty` group (the user's own gid when it has none).
    pub tty_gid: u32,
}

/// Why a key was refused (for the log).
#[allow(dead_code)] // fields are read through Debug in the log line
#[derive(Debug)]
enum Refusal {
    NoSuchUser,
    KeyNotAuthorized,
    Sha1Rsa,
    Instance(String),
}

pub(crate) struct Conn {
    ctx: Arc<RouteCtx>,
    peer: SocketAddr,
    local: SocketAddr,
    /// Lookups done while keys were offered in this connection: (user, key blob) → result.
    checked: HashMap<(String, Vec<u8>), Option<Login>>,
    login: Option<Arc<Login>>,
    forwards: HashMap<(String, u32), tokio::task::JoinHandle<()>>,
    /// Told once, at the first successful login (ends the login grace time).
    on_login: Option<tokio::sync::oneshot::Sender<()>>,
    timeline: Timeline,
}

impl Conn {
    pub fn new(
        ctx: Arc<RouteCtx>,
        peer: SocketAddr,
        local: SocketAddr,
        on_login: tokio::sync::oneshot::Sender<()>,
        timeline: Timeline,
    ) -> Conn {
        Conn {
            ctx,
            peer,
            local,
            checked: HashMap::new(),
            login: None,
            forwards: HashMap::new(),
            on_login: Some(on_login),
            timeline,
        }
    }

    async fn lookup(&mut self, user: &str, key: &russh::keys::PublicKey) -> Result<Login, Refusal> {
        let blob = key
            .to_bytes()
            .map_err(|e| Refusal::Instance(e.to_string()))?;
        let cache_key = (user.to_string(), blob.clone());
        if let Some(found) = self.checked.get(&cache_key) {
            return found.clone().ok_or(Refusal::KeyNotAuthorized);
        }
        let (pid, start) = (self.ctx.route.init_pid, self.ctx.route.start_time);
        let name = user.to_string();
        let peer = self.peer.ip();
        let result = tokio::task::spawn_blocking(move || -> Result<Login, Refusal> {
            let root =
                InstanceRoot::open(pid, start).map_err(|e| Refusal::Instance(e.to_string()))?;
            let text = |path: &str| {
                root.read(path, 4 << 20)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| Refusal::Instance(format!("read {path}: {e}")))
            };
            let (pw, gr) = (text("/etc/passwd")?, text("/etc/group")?);
            let user = find_user(&pw, &name).ok_or(Refusal::NoSuchUser)?;
            let account = passwd::lookup(&user.name, &pw, &gr).ok_or(Refusal::NoSuchUser)?;
            let tty_gid = passwd::group_id("tty", &gr).unwrap_or(account.gid);
            let text = root
                .authorized_keys(&user)
                .map_err(|e| Refusal::Instance(format!("read authorized_keys: {e}")))?;
            let keys = authkeys::parse(&text);
            let found = authkeys::find(&keys, &blob, peer).ok_or(Refusal::KeyNotAuthorized)?;
            Ok(Login {
                user,
                options: found.options.clone(),
                account,
                tty_gid,
            })
        })
        .await
        .unwrap_or_else(|e| Err(Refusal::Instance(e.to_string())));
        self.timeline.mark("key checked");
        if matches!(
            result,
            Ok(_) | Err(Refusal::KeyNotAuthorized | Refusal::NoSuchUser)
        ) {
            self.checked
                .insert(cache_key, result.as_ref().ok().cloned());
        }
        result
    }

    fn refused(&self, user: &str, key: &russh::keys::PublicKey, why: &Refusal) {
        self.ctx.gateway.auth_failed(self.peer.ip());
        if let Some(suppressed) = self.ctx.gateway.log_limit.check() {
            tracing::info!(
                instance = %self.ctx.route.instance_id,
                peer = %self.peer,
                user,
                key = %key.fingerprint(HashAlg::Sha256),
                reason = ?why,
                suppressed,
                "ssh key refused"
            );
        }
    }

    fn options(&self) -> KeyOptions {
        self.login
            .as_ref()
            .map(|l| l.options.clone())
            .unwrap_or_default()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for (_, t) in self.forwards.drain() {
            t.abort();
        }
    }
}

/// Variables a client may set (sshd's `AcceptEnv LANG LC_*` on EC2 images).
pub(crate) fn env_allowed(name: &str) -> bool {
    name == "LANG" || name.starts_with("LC_")
}

impl Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.timeline.auth_request();
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.timeline.auth_request();
        if *offer.algorithm == (Algorithm::Rsa { hash: None }) {
            self.refused(user, offer.public_key, &Refusal::Sha1Rsa);
            return Ok(Auth::reject());
        }
        match self.lookup(user, offer.public_key).await {
            Ok(_) => Ok(Auth::Accept),
            Err(why) => {
                self.refused(user, offer.public_key, &why);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.timeline.auth_request();
        if *key.algorithm == (Algorithm::Rsa { hash: None }) {
            return Ok(Auth::reject());
        }
        match self.lookup(user, key.public_key).await {
            Ok(login) => {
                tracing::info!(
                    instance = %self.ctx.route.instance_id,
                    peer = %self.peer,
                    user,
                    key = %key.public_key.fingerprint(HashAlg::Sha256),
                    "ssh login"
                );
                self.timeline.mark("auth accepted");
                self.login = Some(Arc::new(login));
                if let Some(tx) = self.on_login.take() {
                    let _ = tx.send(());
                }
                Ok(Auth::Accept)
            }
            Err(why) => {
                self.refused(user, key.public_key, &why);
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let s = super::session::SessionCtx {
            ctx: self.ctx.clone(),
            login,
            peer: self.peer,
            local: self.local,
            handle: session.handle(),
            timeline: self.timeline.clone(),
        };
        self.timeline.mark("channel open");
        tokio::spawn(super::session::run(s, channel));
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login.is_none() || self.options().no_port_forwarding {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        tokio::spawn(super::forward::direct(
            self.ctx.clone(),
            host_to_connect.to_string(),
            port_to_connect,
            channel,
            reply,
        ));
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.login.is_none() || self.options().no_port_forwarding || *port > 65535 {
            return Ok(false);
        }
        match super::forward::listen(&self.ctx, address, *port as u16, session.handle()).await {
            Ok((bound, task)) => {
                *port = bound as u32;
                self.forwards
                    .insert((address.to_string(), bound as u32), task);
                Ok(true)
            }
            Err(e) => {
                tracing::debug!(instance = %self.ctx.route.instance_id, address, port = *port, error = %e, "remote forward refused");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        match self.forwards.remove(&(address.to_string(), port)) {
            Some(t) => {
                t.abort();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.options().no_pty {
            session.channel_failure(channel)
        } else {
            session.channel_success(channel)
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if env_allowed(variable_name) {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }
}
