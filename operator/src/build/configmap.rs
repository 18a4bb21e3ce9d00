//! The server's rendered config (ConfigMap) and the apps' credentials (Secret). Both are mounted
//! as files, so changes reach running pods without a restart.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::inputs::Inputs;
use super::names;
use super::server_config::{self, CONFIG_FILE};

pub fn server_config(inputs: &Inputs) -> ConfigMap {
    let config = server_config::render(inputs);
    let json = serde_json::to_string_pretty(&config).expect("ServerConfig serialises");
    ConfigMap {
        metadata: names::child_meta(
            inputs.cluster,
            names::config_map(inputs.cluster),
            "sockudo",
            names::SERVER_COMPONENT,
        ),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), json)])),
        ..ConfigMap::default()
    }
}

/// Every app's key and secret, copied from the Secrets the apps reference, as `<id>.key` and
/// `<id>.secret`. One Secret for all apps means adding an app or rotating a Secret changes no pod
/// template: the server reloads the files in place.
pub fn apps_secret(inputs: &Inputs) -> Secret {
    let mut data = BTreeMap::new();
    for app in &inputs.cluster.spec.apps {
        let r = &app.secret_ref;
        let source = inputs.secrets.get(&r.name);
        for (key, suffix) in [(r.key_key(), "key"), (r.secret_key(), "secret")] {
            if let Some(value) = source.and_then(|d| d.get(key)) {
                data.insert(format!("{}.{suffix}", app.id), ByteString(value.clone()));
            }
        }
    }
    Secret {
        metadata: names::child_meta(
            inputs.cluster,
            names::apps_secret(inputs.cluster),
            "sockudo",
            names::SERVER_COMPONENT,
        ),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}
