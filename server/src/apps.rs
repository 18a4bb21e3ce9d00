//! The app registry: apps with their secrets resolved, swapped atomically on reload so existing
//! connections keep running while credentials rotate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use sockudo_config::{AppConfig, AppFeatures, AppLimits, ConfigError, WebhookConfig, read_secret};

/// One app, ready to use: key and secret read from their files if given so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    pub limits: AppLimits,
    pub features: AppFeatures,
    pub allowed_origins: Vec<String>,
    pub webhooks: Vec<WebhookConfig>,
}

impl App {
    pub fn resolve(index: usize, cfg: &AppConfig) -> Result<App, ConfigError> {
        let at = format!("apps[{index}]");
        let key = read_secret(
            &format!("{at}.key"),
            cfg.key.as_deref(),
            cfg.key_file.as_deref(),
        )?
        .ok_or_else(|| ConfigError::Invalid(vec![format!("`{at}` needs `key` or `key_file`")]))?;
        let secret = read_secret(
            &format!("{at}.secret"),
            cfg.secret.as_deref(),
            cfg.secret_file.as_deref(),
        )?
        .ok_or_else(|| {
            ConfigError::Invalid(vec![format!("`{at}` needs `secret` or `secret_file`")])
        })?;
        Ok(App {
            id: cfg.id.clone(),
            key,
            secret,
            enabled: cfg.enabled,
            limits: cfg.limits.clone(),
            features: cfg.features.clone(),
            allowed_origins: cfg.allowed_origins.clone(),
            webhooks: cfg.webhooks.clone(),
        })
    }

    /// A random numeric id, key and secret, for a server started without any app.
    pub fn generated() -> App {
        let id = (100_000 + rand::random::<u32>() % 900_000).to_string();
        let key = hex::encode(rand::random::<[u8; 10]>());
        let secret = hex::encode(rand::random::<[u8; 16]>());
        let cfg = AppConfig::new(&id, &key, &secret);
        App::resolve(0, &cfg).expect("inline credentials resolve")
    }

    /// `allowed_origins` empty or containing `*` allows any origin (and requests without one).
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() || self.allowed_origins.iter().any(|o| o == "*") {
            return true;
        }
        let Some(origin) = origin else { return false };
        let origin = origin.trim_end_matches('/');
        self.allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// Resolves every app of a config, reading secret files.
pub fn resolve_apps(configs: &[AppConfig]) -> Result<Vec<App>, ConfigError> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| App::resolve(i, c))
        .collect()
}

#[derive(Default)]
struct AppSet {
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

/// Lookup by id (HTTP API) and key (WebSocket path).
#[derive(Default)]
pub struct AppRegistry {
    apps: RwLock<Arc<AppSet>>,
}

impl AppRegistry {
    pub fn new(apps: Vec<App>) -> Self {
        let registry = AppRegistry::default();
        registry.replace(apps);
        registry
    }

    fn current(&self) -> Arc<AppSet> {
        self.apps.read().expect("app registry lock").clone()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.current().by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.current().by_key.get(key).cloned()
    }

    pub fn all(&self) -> Vec<Arc<App>> {
        self.current().by_id.values().cloned().collect()
    }

    /// Swaps in a new set of apps; connections of removed apps are left to finish.
    pub fn replace(&self, apps: Vec<App>) {
        let mut set = AppSet::default();
        for app in apps {
            let app = Arc::new(app);
            set.by_key.insert(app.key.clone(), app.clone());
            set.by_id.insert(app.id.clone(), app);
        }
        *self.apps.write().expect("app registry lock") = Arc::new(set);
    }
}

/// Watches the config file (and the apps' secret files) and reloads the apps when one changes.
pub struct AppReloader {
    path: PathBuf,
    registry: Arc<AppRegistry>,
    /// The app generated at startup when the config had none; kept while that stays true.
    generated: Option<App>,
    fingerprint: Vec<Option<SystemTime>>,
}

impl AppReloader {
    pub fn new(path: PathBuf, registry: Arc<AppRegistry>, generated: Option<App>) -> Self {
        let mut r = AppReloader {
            path,
            registry,
            generated,
            fingerprint: Vec::new(),
        };
        r.fingerprint = r.compute_fingerprint();
        r
    }

    /// Modification times of the config file and of every secret file it names.
    fn compute_fingerprint(&self) -> Vec<Option<SystemTime>> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut out = vec![mtime(&self.path)];
        for app in self.registry_file_paths() {
            out.push(mtime(Path::new(&app)));
        }
        out
    }

    fn registry_file_paths(&self) -> Vec<String> {
        match sockudo_config::load_file(&self.path) {
            Ok(cfg) => cfg
                .apps
                .iter()
                .flat_map(|a| [a.key_file.clone(), a.secret_file.clone()])
                .flatten()
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Reloads now; a bad file is logged and the current apps stay.
    pub fn reload(&mut self) {
        self.fingerprint = self.compute_fingerprint();
        let loaded = sockudo_config::load(Some(&self.path), |k| std::env::var(k).ok())
            .and_then(|cfg| resolve_apps(&cfg.apps));
        match loaded {
            Ok(mut apps) => {
                if apps.is_empty()
                    && let Some(g) = &self.generated
                {
                    apps.push(g.clone());
                }
                let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
                tracing::info!(apps = ?ids, file = %self.path.display(), "apps reloaded");
                self.registry.replace(apps);
            }
            Err(e) => {
                tracing::error!(error = %e, file = %self.path.display(), "config reload failed; keeping the current apps");
            }
        }
    }

    /// Polls every two seconds and reloads on SIGHUP, until `stop` fires.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup_fut = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup_fut = std::future::pending::<()>();
            tokio::select! {
                _ = tick.tick() => {
                    if self.compute_fingerprint() != self.fingerprint {
                        self.reload();
                    }
                }
                _ = hup_fut => {
                    tracing::info!("SIGHUP: reloading apps");
                    self.reload();
                }
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let mut app = App::generated();
        assert!(app.origin_allowed(None));
        app.allowed_origins = vec!["https://a.example".into()];
        assert!(app.origin_allowed(Some("https://a.example")));
        assert!(!app.origin_allowed(Some("https://b.example")));
        assert!(!app.origin_allowed(None));
    }

    #[test]
    fn generated_app_has_numeric_id() {
        let app = App::generated();
        assert!(app.id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(app.key.len(), 20);
    }

    #[test]
    fn secrets_from_files() {
        let dir = std::env::temp_dir().join(format!("sockudo-apps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
        let mut cfg = AppConfig::new("1", "k", "unused");
        cfg.secret = None;
        cfg.secret_file = Some(dir.join("secret").display().to_string());
        assert_eq!(App::resolve(0, &cfg).unwrap().secret, "s3cret");
        cfg.secret_file = Some(dir.join("missing").display().to_string());
        assert!(App::resolve(0, &cfg).is_err());
    }
}
