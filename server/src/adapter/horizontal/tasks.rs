//! The core's two tasks: the publisher (this node's changes, heartbeats and snapshots, in one
//! order) and the receiver (every message of this node's topics).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::envelope::{Change, Envelope};
use super::transport::Topic;
use super::{Cmd, Core, inbox_of};
use crate::hub::HubEvent;

/// How often a starting node sends heartbeats until its first one comes back.
const FIRST_ECHO_PROBE: Duration = Duration::from_millis(100);

/// Sends this node's changes, heartbeats and snapshots, in one order (the delta numbers).
pub(super) async fn publisher(
    core: Arc<Core>,
    mut hub_events: mpsc::UnboundedReceiver<HubEvent>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(core.config.heartbeat_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until the first heartbeat has come back, probe often: startup waits for that echo
    // (`wait_connected`) and should not wait a whole heartbeat interval for it.
    let mut first_echo_probe = tokio::time::interval(FIRST_ECHO_PROBE);
    first_echo_probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let _ = core.cmds.send(Cmd::Hello);
    loop {
        tokio::select! {
            Some(ev) = hub_events.recv() => {
                let mut changes = vec![core.change_of(ev)];
                while changes.len() < 512 {
                    match hub_events.try_recv() {
                        Ok(ev) => changes.push(core.change_of(ev)),
                        Err(_) => break,
                    }
                }
                core.reconcile_all(changes.iter().filter_map(Change::channel_key).collect());
                seq += 1;
                // While degraded the changes are not sent: peers notice the gap in `seq` and
                // we announce the full state when the backend is back.
                if core.healthy.load(Ordering::Acquire) {
                    let env = Envelope::Delta { from: core.me.clone(), seq, changes };
                    let _ = core.publish(&Topic::Control, &env).await;
                }
            }
            Some(cmd) = cmds.recv() => match cmd {
                Cmd::Hello => {
                    let env = Envelope::Hello { from: core.me.clone(), seq, state: core.snapshot() };
                    let _ = core.publish(&Topic::Control, &env).await;
                }
                Cmd::SendState { to } => {
                    let env = Envelope::State { from: core.me.clone(), to, seq, state: core.snapshot() };
                    let _ = core.publish(&Topic::Control, &env).await;
                }
                Cmd::Publish(env) => {
                    let _ = core.publish(&Topic::Control, &env).await;
                }
                Cmd::Reply { to, env } => {
                    let _ = core.publish(&Topic::Node(inbox_of(&to)), &env).await;
                }
                Cmd::Reconcile { app, channel } => core.reconcile(&app, &channel, true),
                Cmd::FlushCounts => core.flush_counts(),
                Cmd::Bye(done) => {
                    let env = Envelope::Bye { from: core.me.clone() };
                    if core.publish(&Topic::Control, &env).await.is_ok() {
                        tracing::info!(node = %core.me.name, "announced departure");
                    }
                    let _ = done.send(());
                    return;
                }
            },
            _ = first_echo_probe.tick(), if !*core.ever_up.borrow() => {
                let env = Envelope::Heartbeat { from: core.me.clone(), seq };
                let _ = core.publish(&Topic::Control, &env).await;
            }
            _ = tick.tick() => {
                let env = Envelope::Heartbeat { from: core.me.clone(), seq };
                let _ = core.publish(&Topic::Control, &env).await;
                core.check();
                core.flush_deferred();
                core.flush_buffer().await;
            }
        }
    }
}

pub(super) async fn receiver(core: Arc<Core>, mut incoming: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = incoming.recv().await {
        core.on_message(&bytes);
    }
}
