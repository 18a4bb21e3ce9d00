//! What the command prints: the endpoint table, a pusher-js snippet, and `render` output.

use std::fmt::Write;

use crate::fleet::Fleet;
use crate::plan::Plan;

/// One line per node and per app.
pub fn endpoints(fleet: &Fleet) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<28} {:<28} METRICS",
        "NODE", "WEBSOCKET", "HTTP API"
    );
    for (i, node) in fleet.nodes().iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<24} {:<28} {:<28} {}",
            node.name,
            fleet.ws_url(i),
            fleet.http_url(i),
            fleet.metrics_url(i).unwrap_or_else(|| "(disabled)".into())
        );
    }
    let _ = writeln!(out, "\n{:<12} {:<24} SECRET", "APP ID", "KEY");
    for app in &fleet.plan().apps {
        let _ = writeln!(out, "{:<12} {:<24} {}", app.id, app.key, app.secret);
    }
    out
}

/// Ready to paste into a page (pusher-js) and a Node script (the `pusher` HTTP SDK).
pub fn pusher_js_snippet(fleet: &Fleet) -> String {
    let Some(node) = fleet.nodes().first() else {
        return String::new();
    };
    let app = fleet.app(0);
    format!(
        "// pusher-js (browser or Node):\n\
         const pusher = new Pusher('{key}', {{\n  \
           wsHost: '127.0.0.1', wsPort: {port}, forceTLS: false,\n  \
           enabledTransports: ['ws'], cluster: 'mt1',\n\
         }});\n\
         pusher.subscribe('my-channel').bind('my-event', (data) => console.log(data));\n\n\
         // Publish with the pusher HTTP SDK (any node's port works):\n\
         const api = new (require('pusher'))({{ appId: '{id}', key: '{key}', secret: '{secret}',\n  \
           host: '127.0.0.1', port: '{port}', useTLS: false }});\n\
         await api.trigger('my-channel', 'my-event', {{ hello: 'fleet' }});\n",
        key = app.key,
        id = app.id,
        secret = app.secret,
        port = node.port,
    )
}

/// `sockudo-fleet render`: what the operator renders, and what runs locally instead of it.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}: {} replica(s)", plan.name, plan.replicas);
    let _ = writeln!(
        out,
        "\n## Server config (the operator's ConfigMap, config.json)\n{}",
        plan.config_json
    );
    let _ = writeln!(out, "\n## Secret files mounted into the server pods");
    for v in &plan.secret_files {
        for file in v.files.keys() {
            let _ = writeln!(out, "{}/{file}   (Secret {})", v.dir, v.secret);
        }
    }
    for m in &plan.missing {
        let _ = writeln!(out, "MISSING: {m}");
    }
    for r in &plan.redis {
        let _ = writeln!(
            out,
            "\n## Managed {} `{}` ({:?}, {} pod(s)): redis.conf\n{}",
            r.role.spec_path(),
            r.name,
            r.mode,
            r.pods(),
            r.conf
        );
    }
    if let Some(n) = &plan.nats {
        let _ = writeln!(
            out,
            "\n## Managed NATS `{}` ({} server(s), JetStream {}): nats.conf\n{}",
            n.name,
            n.replicas,
            if n.jetstream { "on" } else { "off" },
            n.conf
        );
    }
    for e in &plan.external {
        let _ = writeln!(out, "\nNOTE: {e}");
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "WARNING (operator): {w}");
    }
    out
}
