//! A connection's protocol state and its message handlers.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use sockudo_config::RateLimit;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::apps::App;
use crate::auth;
use crate::cache::cache_channel_key;
use crate::channel::{ChannelKind, ChannelType, SERVER_TO_USER_PREFIX, validate_name};
use crate::connection::handle::{ConnHandle, Frame};
use crate::connection::upgrade::Socket;
use crate::connection::wake::Gate;
use crate::connection::{close, close_reason};
use crate::delta::Algorithm;
use crate::delta::wire::{self as delta_wire, SubscriptionDelta};
use crate::hub::{AppHub, PresenceMember};
use crate::protocol::ErrorCode;
use crate::protocol::client::{self, ClientMessage, SubscribeRequest};
use crate::protocol::codes::CLOSE_MESSAGE_TOO_BIG;
use crate::protocol::server::{self as frames, EventData};
use crate::rate_limit::{gcra, now_micros};
use crate::state::ServerState;

/// The largest extra share of `activity_timeout` a connection waits before pinging.
const PING_SPREAD: f64 = 0.1;

struct Subscription {
    kind: ChannelType,
    /// Presence: this socket's user id in the channel.
    user_id: Option<Arc<str>>,
}

struct SignedIn {
    id: Arc<str>,
    watchlist: Vec<Arc<str>>,
}

pub(super) struct Session {
    state: Arc<ServerState>,
    app: Arc<App>,
    hub: Arc<AppHub>,
    handle: Arc<ConnHandle>,
    socket_id: String,
    channels: HashMap<Arc<str>, Subscription>,
    user: Option<SignedIn>,
    /// Signed in, or holds a private/presence subscription (for `enable_user_authentication`).
    authenticated: bool,
    client_event_tat: Option<u64>,
    /// This app's per-app counters, resolved once.
    counters: crate::metrics::AppCounters,
}

/// Why the connection task woke.
enum Event {
    Close(u16),
    WriteFailed,
    Read(Option<Result<Message, tungstenite::Error>>),
    Timer,
}

/// What the loop does after a frame.
enum Flow {
    Continue,
    Close(u16),
}

#[derive(Deserialize)]
struct PresenceData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UserData {
    id: serde_json::Value,
    #[serde(default)]
    watchlist: Vec<String>,
}

impl Session {
    pub(super) fn new(state: Arc<ServerState>, app: Arc<App>, handle: Arc<ConnHandle>) -> Self {
        Session {
            hub: state.hub().app(&app.id),
            counters: state.metrics.app(&app.id),
            socket_id: handle.socket_id.to_string(),
            state,
            app,
            handle,
            channels: HashMap::new(),
            user: None,
            authenticated: false,
            client_event_tat: None,
        }
    }

    /// Credentials may rotate while connected: use the registry's current version of the app.
    fn refresh_app(&mut self) {
        if let Some(app) = self.state.apps.by_id(&self.app.id) {
            self.app = app;
        }
    }

    fn send(&self, text: String) {
        self.handle.send(&Frame::from(text));
    }

    fn error(&self, code: ErrorCode, message: &str) {
        self.send(frames::error(code, message));
    }

    pub(super) async fn run(&mut self, socket: &mut Socket) {
        let config = &self.state.config;
        // Each connection waits up to 10% longer than `activity_timeout` before pinging:
        // connections opened together (a reconnect wave after a deploy) would otherwise all be
        // pinged, and all answer, in the same instant, every `activity_timeout`.
        let activity = Duration::from_secs(config.activity_timeout.max(1))
            .mul_f64(1.0 + rand::random_range(0.0..PING_SPREAD));
        let pong_timeout = Duration::from_secs(config.pong_timeout.max(1));
        let signin_deadline = self
            .app
            .features
            .enable_user_authentication
            .then(|| Instant::now() + Duration::from_secs(config.user_authentication_timeout));
        let mut close_all = self.state.lifecycle.close_sockets_signal();
        let close_all = close_all.changed();
        tokio::pin!(close_all);
        let handle = self.handle.clone();
        let mut last_seen = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        // The timer is moved lazily: it fires at the earliest possible deadline and re-arms.
        let first = signin_deadline.map_or(last_seen + activity, |d| d.min(last_seen + activity));
        let timer = sleep_until(first);
        tokio::pin!(timer);
        // Wake-ups are mostly queued frames: poll the socket, the shutdown signal and the timer
        // only when they woke the task.
        let read_gate = Gate::new();
        let close_all_gate = Gate::new();
        let timer_gate = Gate::new();

        let code = loop {
            // The order is the priority: closes, then queued frames, then the client, then timers.
            // Queued frames are written right here; the outbox wakes the task when there are.
            let event = poll_fn(|cx| {
                if let Poll::Ready(code) = handle.poll_close(cx) {
                    return Poll::Ready(Event::Close(code));
                }
                if close_all_gate
                    .poll(cx, |cx| close_all.as_mut().poll(cx))
                    .is_ready()
                {
                    return Poll::Ready(Event::Close(ErrorCode::Reconnect.code()));
                }
                if let Poll::Ready(e) = handle.outbox.poll_write(cx) {
                    tracing::debug!(socket_id = %self.socket_id, error = %e, "write failed");
                    return Poll::Ready(Event::WriteFailed);
                }
                if let Poll::Ready(msg) = read_gate.poll(cx, |cx| socket.poll_next_unpin(cx)) {
                    return Poll::Ready(Event::Read(msg));
                }
                timer_gate
                    .poll(cx, |cx| timer.as_mut().poll(cx))
                    .map(|()| Event::Timer)
            })
            .await;
            match event {
                Event::Close(code) => break code,
                Event::WriteFailed => return,
                Event::Read(msg) => {
                    last_seen = Instant::now();
                    ping_sent = None;
                    match msg {
                        None | Some(Ok(Message::Close(_))) => return,
                        Some(Err(tungstenite::Error::Capacity(e))) => {
                            tracing::debug!(socket_id = %self.socket_id, error = %e, "frame too big");
                            break CLOSE_MESSAGE_TOO_BIG;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(socket_id = %self.socket_id, error = %e, "read failed");
                            return;
                        }
                        Some(Ok(Message::Text(text))) => {
                            self.state.metrics.messages_received.inc();
                            self.state.metrics.bytes_received.inc_by(text.len() as u64);
                            self.counters.messages_received.inc();
                            self.counters.bytes_received.inc_by(text.len() as u64);
                            if let Flow::Close(code) = self.on_text(text.as_str()).await {
                                break code;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.error(
                                ErrorCode::InvalidMessage,
                                "binary frames are not supported; send JSON text",
                            );
                        }
                        Some(Ok(_)) => {}
                    }
                }
                Event::Timer => {
                    let now = Instant::now();
                    if let Some(deadline) = signin_deadline
                        && !self.authenticated
                        && now >= deadline
                    {
                        break ErrorCode::Unauthorized.code();
                    }
                    let next = match ping_sent {
                        Some(at) if now >= at + pong_timeout => {
                            break ErrorCode::PongNotReceived.code();
                        }
                        Some(at) => at + pong_timeout,
                        None if now >= last_seen + activity => {
                            self.send(frames::PING.to_string());
                            ping_sent = Some(now);
                            now + pong_timeout
                        }
                        None => last_seen + activity,
                    };
                    let next = match signin_deadline {
                        Some(d) if !self.authenticated => next.min(d),
                        _ => next,
                    };
                    timer.as_mut().reset(next);
                    timer_gate.open();
                }
            }
        };
        // Frames queued before the close (e.g. the `pusher:error` explaining it) leave first,
        // except for a consumer too slow to take them.
        if code == ErrorCode::OverCapacity.code() {
            handle.outbox.discard_queued();
        }
        close(socket, &handle, code, close_reason(code)).await;
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let msg = match client::parse(text) {
            Ok(m) => m,
            Err(e) => {
                self.error(ErrorCode::InvalidMessage, &e.to_string());
                return Flow::Continue;
            }
        };
        match msg {
            ClientMessage::Ping => self.send(frames::PONG.to_string()),
            ClientMessage::Pong | ClientMessage::Other(_) => {}
            ClientMessage::Subscribe(req) => self.subscribe(req).await,
            ClientMessage::Unsubscribe { channel } => self.unsubscribe(&channel),
            ClientMessage::Signin { user_data, auth } => return self.signin(&user_data, &auth),
            ClientMessage::EnableDelta { algorithm } => self.enable_delta(algorithm.as_deref()),
            ClientMessage::DeltaSyncError { channel } => self.handle.delta.resync(&channel),
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(&event, &channel, data).await,
        }
        Flow::Continue
    }

    async fn subscribe(&mut self, req: SubscribeRequest) {
        self.refresh_app();
        let channel = req.channel.as_str();
        if let Err(e) = validate_name(channel, self.app.limits.max_channel_name_length) {
            self.error(ErrorCode::ChannelRefused, &e.to_string());
            return;
        }
        let kind = ChannelType::of(channel);
        if kind.kind == ChannelKind::ServerToUser {
            let own = self
                .user
                .as_ref()
                .is_some_and(|u| channel[SERVER_TO_USER_PREFIX.len()..] == *u.id);
            if own {
                self.send(frames::subscription_succeeded(channel, None));
            } else {
                self.send(frames::subscription_error(
                    channel,
                    "AuthError",
                    "sign in as this user to subscribe to its channel",
                    401,
                ));
            }
            return;
        }
        if kind.needs_auth() {
            let data = kind
                .is_presence()
                .then_some(req.channel_data.as_deref())
                .flatten();
            let signed = auth::channel_string(&self.socket_id, channel, data);
            if let Err(e) = auth::verify_token(
                &self.app.key,
                &self.app.secret,
                req.auth.as_deref(),
                &signed,
            ) {
                tracing::debug!(socket_id = %self.socket_id, %channel, error = %e, "subscription refused");
                self.send(frames::subscription_error(
                    channel,
                    "AuthError",
                    &e.to_string(),
                    401,
                ));
                return;
            }
        }
        let member = if kind.is_presence() {
            match self.presence_member(req.channel_data.as_deref()) {
                Ok(m) => Some(m),
                Err(message) => {
                    self.send(frames::subscription_error(
                        channel,
                        "InvalidChannelData",
                        &message,
                        400,
                    ));
                    return;
                }
            }
        } else {
            None
        };
        let user_id = member.as_ref().map(|m| m.user_id.clone());
        // Before joining the hub, so the first event already sees the setting; a resubscribe
        // forgets the bases and starts from a full message.
        let delta_setting = match SubscriptionDelta::parse(req.delta.as_ref()) {
            Ok(s) => s,
            Err(message) => {
                self.send(frames::subscription_error(
                    channel,
                    "InvalidDeltaSetting",
                    &message,
                    400,
                ));
                return;
            }
        };
        let delta_algorithm = self.subscribe_delta(channel, delta_setting);
        let notify_count = self.app.features.enable_subscription_count && !kind.is_presence();
        let subscribed = match self
            .hub
            .subscribe(channel, &self.handle, member, notify_count)
        {
            Ok(s) => s,
            Err(full) => {
                self.handle.delta.unsubscribe(channel);
                self.error(ErrorCode::OverCapacity, &full.to_string());
                return;
            }
        };
        if delta_setting != SubscriptionDelta::Inherit {
            self.send(delta_wire::enabled(delta_algorithm, Some(channel)));
        }
        if kind.needs_auth() {
            self.authenticated = true;
        }
        if subscribed.duplicate {
            return;
        }
        self.state.metrics.subscriptions.inc();
        self.channels.insert(
            Arc::from(channel),
            Subscription {
                kind,
                user_id: user_id.clone(),
            },
        );
        let webhooks = &self.state.webhooks;
        if subscribed.occupied {
            webhooks.channel_occupied(&self.app, channel);
        }
        if subscribed.new_member
            && let Some(u) = &user_id
        {
            webhooks.member_added(&self.app, channel, u);
        }
        if !kind.is_presence() {
            webhooks.subscription_count(&self.app, channel, subscribed.subscription_count);
        }
        if kind.cache {
            self.replay_cache(channel).await;
        }
    }

    /// `pusher:enable_delta_compression`: deltas for every channel without its own setting.
    fn enable_delta(&self, algorithm: Option<&str>) {
        let delta = &self.state.delta;
        if !delta.config().enabled {
            self.send(delta_wire::enabled(None, None));
            return;
        }
        let algorithm = match algorithm.map(Algorithm::parse).transpose() {
            Ok(a) => a.unwrap_or_else(|| delta.default_algorithm()),
            Err(e) => {
                self.error(ErrorCode::InvalidMessage, &e.to_string());
                return;
            }
        };
        self.handle.delta.enable(algorithm, delta.max_state_age());
        tracing::debug!(socket_id = %self.socket_id, %algorithm, "delta compression enabled");
        self.send(delta_wire::enabled(Some(algorithm), None));
    }

    /// Applies a subscription's delta setting; returns the algorithm in force (None: off).
    fn subscribe_delta(&self, channel: &str, setting: SubscriptionDelta) -> Option<Algorithm> {
        let delta = &self.state.delta;
        let setting = if delta.config().enabled {
            setting
        } else {
            SubscriptionDelta::Disabled
        };
        self.handle.delta.subscribe(
            channel,
            setting,
            delta.default_algorithm(),
            delta.max_state_age(),
        )
    }

    /// Presence `channel_data`: `user_id` as a string or a number, optional `user_info`.
    fn presence_member(&self, channel_data: Option<&str>) -> Result<PresenceMember, String> {
        let data = channel_data.ok_or("presence subscriptions need channel_data")?;
        let max = self.app.limits.max_presence_member_size_kb as usize * 1024;
        if data.len() > max {
            return Err(format!(
                "channel_data is {} bytes; the limit is {max}",
                data.len()
            ));
        }
        let parsed: PresenceData<'_> =
            serde_json::from_str(data).map_err(|e| format!("invalid channel_data: {e}"))?;
        let raw = parsed.user_id.get();
        let user_id: String = if raw.starts_with('"') {
            serde_json::from_str(raw).map_err(|e| e.to_string())?
        } else if raw.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !raw.is_empty() {
            raw.to_string()
        } else {
            return Err("user_id must be a string or an integer".into());
        };
        if user_id.is_empty() {
            return Err("user_id is empty".into());
        }
        let info = parsed
            .user_info
            .map(|r| r.to_owned())
            .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("{} is JSON"));
        Ok(PresenceMember {
            user_id: Arc::from(user_id),
            user_info: info,
            max_members: self.app.limits.max_presence_members_per_channel as usize,
        })
    }

    async fn replay_cache(&self, channel: &str) {
        let key = cache_channel_key(&self.app.id, channel);
        match self.state.cache.get(&key).await {
            Ok(Some(cached)) => self.send(cached.value),
            Ok(None) => {
                self.send(frames::cache_miss(channel));
                self.state.webhooks.cache_miss(&self.app, channel);
            }
            Err(e) => {
                tracing::warn!(error = %e, %channel, "cache unavailable; answering cache_miss");
                self.send(frames::cache_miss(channel));
            }
        }
    }

    fn unsubscribe(&mut self, channel: &str) {
        let Some((name, sub)) = self.channels.remove_entry(channel) else {
            return;
        };
        self.leave(&name, &sub);
    }

    fn leave(&self, channel: &str, sub: &Subscription) {
        let notify_count = self.app.features.enable_subscription_count && !sub.kind.is_presence();
        let left = self
            .hub
            .unsubscribe(channel, self.handle.socket_id, notify_count);
        // After the hub: no fan-out reaches this socket for the channel any more.
        self.handle.delta.unsubscribe(channel);
        let Some(left) = left else {
            return;
        };
        self.state.metrics.subscriptions.dec();
        let webhooks = &self.state.webhooks;
        if let Some(user) = &left.member_removed {
            webhooks.member_removed(&self.app, channel, user);
        }
        if left.vacated {
            webhooks.channel_vacated(&self.app, channel);
        }
        if !sub.kind.is_presence() {
            webhooks.subscription_count(&self.app, channel, left.subscription_count);
        }
    }

    fn signin(&mut self, user_data: &str, token: &str) -> Flow {
        self.refresh_app();
        let signed = auth::user_string(&self.socket_id, user_data);
        if let Err(e) = auth::verify_token(&self.app.key, &self.app.secret, Some(token), &signed) {
            tracing::debug!(socket_id = %self.socket_id, error = %e, "sign-in refused");
            self.error(ErrorCode::Unauthorized, &format!("sign-in refused: {e}"));
            return Flow::Close(ErrorCode::Unauthorized.code());
        }
        let parsed: UserData = match serde_json::from_str(user_data) {
            Ok(d) => d,
            Err(e) => {
                self.error(ErrorCode::Unauthorized, &format!("invalid user_data: {e}"));
                return Flow::Close(ErrorCode::Unauthorized.code());
            }
        };
        let id = match parsed.id {
            serde_json::Value::String(s) if !s.is_empty() => s,
            _ => {
                self.error(
                    ErrorCode::Unauthorized,
                    "user_data.id must be a non-empty string",
                );
                return Flow::Close(ErrorCode::Unauthorized.code());
            }
        };
        if let Some(old) = self.user.take() {
            self.hub
                .sign_out(&old.id, self.handle.socket_id, &old.watchlist);
        }
        let watchlist: Vec<Arc<str>> = if self.app.features.enable_watchlist_events {
            parsed.watchlist.into_iter().map(Arc::from).collect()
        } else {
            Vec::new()
        };
        let id: Arc<str> = Arc::from(id);
        let online = self.hub.sign_in(
            &id,
            &self.handle,
            &watchlist,
            self.app.features.enable_watchlist_events,
        );
        self.send(frames::signin_success(user_data));
        if !online.is_empty() {
            let ids: Vec<&str> = online.iter().map(|s| s.as_ref()).collect();
            self.send(frames::watchlist_events(&[("online", ids)]));
        }
        self.user = Some(SignedIn { id, watchlist });
        self.authenticated = true;
        Flow::Continue
    }

    async fn client_event(&mut self, event: &str, channel: &str, data: &RawValue) {
        self.refresh_app();
        let limits = &self.app.limits;
        if !self.app.features.enable_client_messages {
            return self.error(
                ErrorCode::ClientEventRefused,
                "client events are not enabled for this app",
            );
        }
        let Some(sub) = self.channels.get(channel) else {
            return self.error(
                ErrorCode::ClientEventRefused,
                "subscribe to the channel before sending client events on it",
            );
        };
        if !sub.kind.allows_client_events() {
            return self.error(
                ErrorCode::ClientEventRefused,
                "client events are only allowed on private and presence channels",
            );
        }
        if event.len() > limits.max_event_name_length {
            return self.error(ErrorCode::ClientEventRefused, "event name is too long");
        }
        if data.get().len() > limits.max_event_payload_kb * 1024 {
            return self.error(ErrorCode::ClientEventRefused, "event data is too large");
        }
        let limit = RateLimit {
            max_requests: u64::from(limits.max_client_events_per_second),
            window_seconds: 1,
        };
        let (decision, tat) = gcra(self.client_event_tat, now_micros(), &limit);
        if !decision.allowed {
            return self.error(
                ErrorCode::ClientEventRefused,
                "client event rate limit exceeded",
            );
        }
        self.client_event_tat = tat;
        let user_id = sub.user_id.clone();
        let frame = Frame::from(frames::event(
            event,
            channel,
            EventData::Raw(data),
            user_id.as_deref(),
        ));
        match self
            .state
            .adapter
            .broadcast(
                &self.app.id,
                channel,
                &frame,
                Some(self.handle.socket_id),
                None,
            )
            .await
        {
            Ok(n) => self.state.metrics.delivered(&self.app.id, n, frame.len()),
            Err(e) => tracing::warn!(error = %e, %channel, "client event not relayed"),
        }
        self.state.webhooks.client_event(
            &self.app,
            channel,
            event,
            data.get(),
            &self.socket_id,
            user_id.as_deref(),
        );
    }

    /// Leaves every channel and signs out; runs once the socket is gone.
    pub(super) fn cleanup(&mut self) {
        for (name, sub) in std::mem::take(&mut self.channels) {
            self.leave(&name, &sub);
        }
        if let Some(user) = self.user.take() {
            self.hub
                .sign_out(&user.id, self.handle.socket_id, &user.watchlist);
        }
    }
}
