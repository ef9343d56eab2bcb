//! A Kubernetes API server with the semantics lambda-deployer depends on, in memory, over HTTPS: live CRDs with
//! schema validation and pruning, the status subresource, optimistic concurrency, patches and server-side apply,
//! watch, Table output for kubectl, EKS-style token authentication and RBAC. See `testbed/APISERVER.md`.

mod auth;
mod discovery;
mod errors;
mod faults;
mod handlers;
mod managed;
mod meta;
mod patch;
mod proto;
mod schema;
mod select;
mod server;
mod store;
mod table;
mod validation;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::identity::{self, AccessEntry, AwsIdentity};
use server::{Shared, lock};

pub use faults::KubeFault;

pub struct ApiServerOptions {
    pub listen: SocketAddr,
    pub cluster_name: String,
    /// Secrets used to verify EKS tokens.
    pub identities: Vec<AwsIdentity>,
    pub access_entries: Vec<AccessEntry>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster_name: identity::CLUSTER_NAME.into(),
            identities: AwsIdentity::all(),
            access_entries: vec![AccessEntry::deployer(), AccessEntry::outsider()],
        }
    }
}

/// One request the server answered (discovery included; `/_testbed/*` control calls excluded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// get/list/watch/create/update/patch/delete/deletecollection (non-resource URLs: the lower-cased method).
    pub verb: String,
    /// API group ("" for core and for non-resource URLs).
    pub group: String,
    /// Plural resource name; "" for non-resource URLs.
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Username ("kubernetes-admin" for the admin token, "system:anonymous" when unauthenticated).
    pub user: String,
    pub status: u16,
}

impl RequestRecord {
    /// A PUT or PATCH of `<resource>/status`.
    pub fn is_status_write(&self) -> bool {
        self.subresource == "status" && (self.verb == "update" || self.verb == "patch")
    }
}

pub struct ApiServer {
    shared: Arc<Shared>,
    url: String,
    ca_pem: String,
    admin_token: String,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection (and so every watch stream).
        self.task.abort();
    }
}

fn tls_config() -> std::io::Result<(rustls::ServerConfig, String)> {
    let err = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "testbed-ca");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(err)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], key_der)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, ca_cert.pem()))
}

async fn serve_connection(shared: Arc<Shared>, acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) {
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
    let service = hyper::service::service_fn(move |req| server::handle(shared.clone(), req));
    // Connection errors (client went away, a fault dropped the connection) end this connection only.
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

impl ApiServer {
    /// Starts serving HTTPS (self-generated CA; server cert for 127.0.0.1 and localhost) on the current tokio runtime.
    pub async fn start(opts: ApiServerOptions) -> std::io::Result<ApiServer> {
        let (config, ca_pem) = tls_config()?;
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let admin_token = format!("testbed-admin-{}", uuid::Uuid::new_v4().simple());
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new()),
            auth: auth::Authenticator {
                admin_token: admin_token.clone(),
                cluster_name: opts.cluster_name,
                identities: opts.identities,
                access_entries: opts.access_entries,
            },
            requests: Mutex::new(VecDeque::new()),
            faults: Mutex::default(),
            server_address: addr.to_string(),
            eks_tokens: Mutex::default(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let loop_shared = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((tcp, _)) = accepted {
                            connections.spawn(serve_connection(loop_shared.clone(), acceptor.clone(), tcp));
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(ApiServer { shared, url: format!("https://{addr}"), ca_pem, admin_token, task })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Admin kubeconfig (bearer token, CA inline), context `testbed`.
    pub fn kubeconfig(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {ca}\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    \
             user: testbed-admin\n    namespace: default\ncurrent-context: testbed\nusers:\n- name: testbed-admin\n  \
             user:\n    token: {}\npreferences: {{}}\n",
            self.url, self.admin_token
        )
    }

    /// Writes DIR/kubeconfig, DIR/ca.pem, DIR/kube.url.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("kubeconfig"), self.kubeconfig())?;
        std::fs::write(dir.join("ca.pem"), &self.ca_pem)?;
        std::fs::write(dir.join("kube.url"), format!("{}\n", self.url))
    }

    /// Every EKS bearer token (`k8s-aws-v1.…`) that authenticated a request.
    pub fn eks_tokens(&self) -> Vec<String> {
        lock(&self.shared.eks_tokens).iter().cloned().collect()
    }

    /// Every request served, in order (the most recent 200,000).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Adds a scripted fault (also `POST /_testbed/faults` with the admin token).
    pub fn inject(&self, fault: KubeFault) {
        lock(&self.shared.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Stores an object as-is, bypassing validation, pruning and admission (also `POST /_testbed/raw`). The server only
    /// fills in uid, creationTimestamp, generation and a new resourceVersion. Returns the stored object.
    pub fn insert_raw(&self, object: serde_json::Value) -> Result<serde_json::Value, String> {
        lock(&self.shared.store).insert_raw(object)
    }
}

/// `testbed kube --listen ADDR --dir DIR`: start, write the files, print the URL, run until SIGTERM/SIGINT.
pub async fn serve_until_signal(listen: SocketAddr, dir: &Path) -> std::io::Result<()> {
    let server = ApiServer::start(ApiServerOptions { listen, ..Default::default() }).await?;
    server.write_files(dir)?;
    println!("{}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(server);
    Ok(())
}
