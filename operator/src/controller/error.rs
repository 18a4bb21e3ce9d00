//! Errors of the controller.

/// Everything that can fail in a reconcile or around the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the SockudoCluster has no namespace")]
    NoNamespace,
    #[error("cannot generate a credential: {0}")]
    Random(String),
    #[error("cannot serialise {kind} {name}: {source}")]
    Serialize {
        kind: &'static str,
        name: String,
        source: serde_json::Error,
    },
    #[error("Redis Cluster: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("health and metrics server: {0}")]
    Io(#[from] std::io::Error),
    #[error("lost the leader Lease {0}")]
    LostLease(String),
    #[error("re-creating a StatefulSet: {0}")]
    Recreate(String),
}

impl Error {
    /// Short label for the errors metric.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::NoNamespace => "no_namespace",
            Error::Random(_) => "random",
            Error::Serialize { .. } => "serialize",
            Error::Redis(_) => "redis",
            Error::Io(_) => "io",
            Error::LostLease(_) => "lease",
            Error::Recreate(_) => "recreate",
        }
    }
}
