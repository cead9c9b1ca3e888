//! Reaching a NATS server (a store's, or HQ's hub) and making JetStream streams with
//! JetStream's own API, which Debian's nats-server 2.9 answers in a form `async-nats` 0.45's
//! stream and bucket helpers cannot always read.

use crate::secrets::read_private_file;
use std::path::PathBuf;
use std::time::Duration;

/// Where a server is and how to log in: `[store]`'s or `[hub]`'s keys.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The config section, for messages (`store`, `hub`).
    pub section: &'static str,
    pub urls: Vec<String>,
    pub creds_file: Option<PathBuf>,
    pub user_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
}

impl Access {
    /// The credentials and TLS root the section names. Each file is read like every secret
    /// (refused when others may read it).
    async fn options(&self) -> Result<async_nats::ConnectOptions, String> {
        let s = self.section;
        let mut opts = async_nats::ConnectOptions::new();
        if let Some(path) = &self.creds_file {
            read_private_file(path).map_err(|e| format!("{s}.creds_file: {e}"))?;
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| format!("{s}.creds_file: {e}"))?;
        }
        if let Some(path) = &self.user_file {
            let text = read_private_file(path).map_err(|e| format!("{s}.user_file: {e}"))?;
            let text = String::from_utf8_lossy(&text);
            let (user, pass) = text.trim().split_once(':').ok_or(format!(
                "{s}.user_file: expected one line \"user:password\""
            ))?;
            opts = opts.user_and_password(user.to_string(), pass.to_string());
        }
        if let Some(path) = &self.nkey_file {
            let seed = read_private_file(path).map_err(|e| format!("{s}.nkey_file: {e}"))?;
            opts = opts.nkey(String::from_utf8_lossy(&seed).trim().to_string());
        }
        if let Some(path) = &self.tls_ca_file {
            opts = opts.add_root_certificates(path.clone()).require_tls(true);
        }
        Ok(opts)
    }

    /// Connects, retrying in the background while no server answers: a till (or HQ)
    /// starts whether its server is up or not.
    pub async fn connect(&self, timeout: Duration) -> Result<async_nats::Client, String> {
        let s = self.section;
        let servers = self
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{s}.nats_url: {e}"))?;
        self.options()
            .await?
            .connection_timeout(timeout.max(Duration::from_secs(1)))
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|e| format!("{s}.nats_url: {e}"))
    }
}

/// JetStream's "stream name already in use": created meanwhile (by another till) with the
/// same settings is not an error.
const NAME_IN_USE: i64 = 10058;

/// A JetStream API request (`$JS.API` or a domain's `$JS.<domain>.API`) and its JSON
/// answer; an `error` in it is returned as `Err` with its `err_code`.
pub async fn request(
    client: &async_nats::Client,
    subject: String,
    body: &serde_json::Value,
) -> Result<serde_json::Value, (Option<i64>, String)> {
    let reply = client
        .request(subject, body.to_string().into())
        .await
        .map_err(|e| (None, e.to_string()))?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| (None, format!("the answer is not JSON: {e}")))?;
    match answer.get("error") {
        Some(e) => Err((
            e.get("err_code").and_then(serde_json::Value::as_i64),
            e.to_string(),
        )),
        None => Ok(answer),
    }
}

/// Creates the stream `config["name"]` through `api` (`$JS.API`, `$JS.<domain>.API`), or
/// leaves the one there as it is.
pub async fn create_stream(
    client: &async_nats::Client,
    api: &str,
    config: &serde_json::Value,
) -> Result<(), String> {
    make_stream(client, api, config, false).await
}

/// Creates the stream, or brings an existing one to `config` (sources added, say).
pub async fn create_or_update_stream(
    client: &async_nats::Client,
    api: &str,
    config: &serde_json::Value,
) -> Result<(), String> {
    make_stream(client, api, config, true).await
}

async fn make_stream(
    client: &async_nats::Client,
    api: &str,
    config: &serde_json::Value,
    update: bool,
) -> Result<(), String> {
    let name = config["name"].as_str().unwrap_or_default();
    match request(client, format!("{api}.STREAM.CREATE.{name}"), config).await {
        Ok(_) => Ok(()),
        Err((Some(NAME_IN_USE), _)) if !update => Ok(()),
        Err((Some(NAME_IN_USE), _)) => {
            request(client, format!("{api}.STREAM.UPDATE.{name}"), config)
                .await
                .map(|_| ())
                .map_err(|(_, e)| format!("JetStream refused to update stream {name}: {e}"))
        }
        Err((_, e)) => Err(format!("JetStream refused to create stream {name}: {e}")),
    }
}

/// What the JetStream API found of a subject's last value in a stream.
#[derive(Debug)]
pub enum Found {
    Message(StoredMessage),
    /// The stream holds nothing on the subject.
    Nothing,
    /// There is no such stream (a store's mirror not made yet).
    NoStream,
}

/// The stored message of `subject`'s last value in `stream` (through `api`), base64
/// decoded: `None` when the stream has none, or is not there.
pub async fn last_of_subject(
    client: &async_nats::Client,
    api: &str,
    stream: &str,
    subject: &str,
) -> Result<Option<StoredMessage>, String> {
    Ok(
        match find_last_of_subject(client, api, stream, subject).await? {
            Found::Message(m) => Some(m),
            Found::Nothing | Found::NoStream => None,
        },
    )
}

/// [`last_of_subject`], telling a stream without the subject from no stream at all.
pub async fn find_last_of_subject(
    client: &async_nats::Client,
    api: &str,
    stream: &str,
    subject: &str,
) -> Result<Found, String> {
    use base64::Engine as _;
    let body = serde_json::json!({ "last_by_subj": subject });
    match request(client, format!("{api}.STREAM.MSG.GET.{stream}"), &body).await {
        Ok(answer) => {
            let m = &answer["message"];
            let b64 = base64::engine::general_purpose::STANDARD;
            let decode = |field: &str| -> Result<Vec<u8>, String> {
                match m[field].as_str() {
                    Some(s) => b64.decode(s).map_err(|e| format!("{field}: {e}")),
                    None => Ok(Vec::new()),
                }
            };
            Ok(Found::Message(StoredMessage {
                data: decode("data")?,
                headers: String::from_utf8_lossy(&decode("hdrs")?).into_owned(),
            }))
        }
        Err((Some(10037), _)) => Ok(Found::Nothing),
        Err((Some(10059), _)) => Ok(Found::NoStream),
        Err((_, e)) => Err(e),
    }
}

/// The last message on `subject` in `stream`, read with JetStream's direct get: answered by
/// the stream itself (and by a store's mirror of it, which has `mirror_direct`) rather than
/// by the JetStream API, whose answer is JSON with the message in base64. `None` when the
/// stream holds nothing on the subject, or the server has no JetStream to answer at all. A
/// stream that is not there leaves the request unanswered until its timeout: a till asks
/// this way only once it knows the stream is there (`guard::last_value`).
pub async fn direct_last_of_subject(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
) -> Result<Option<StoredMessage>, String> {
    use async_nats::{RequestErrorKind, StatusCode};
    let body = serde_json::json!({ "last_by_subj": subject }).to_string();
    let answer = match client
        .request(format!("$JS.API.DIRECT.GET.{stream}"), body.into())
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == RequestErrorKind::NoResponders => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    match answer.status {
        None | Some(StatusCode::OK) => {}
        Some(StatusCode::NOT_FOUND) => return Ok(None),
        Some(status) => {
            return Err(format!(
                "the store answered {status} {}",
                answer.description.unwrap_or_default()
            ));
        }
    }
    let mut headers = String::new();
    for (name, values) in answer.headers.iter().flat_map(|h| h.iter()) {
        for v in values {
            headers.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    Ok(Some(StoredMessage {
        data: answer.payload.to_vec(),
        headers,
    }))
}

/// A message as a stream holds it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub data: Vec<u8>,
    /// The raw header block (`NATS/1.0\r\nName: value\r\n...`), empty without headers.
    pub headers: String,
}

impl StoredMessage {
    /// A KV delete or purge marker rather than a value.
    pub fn is_kv_removal(&self) -> bool {
        self.headers.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("KV-Operation") && matches!(v.trim(), "DEL" | "PURGE")
            })
        })
    }
}
