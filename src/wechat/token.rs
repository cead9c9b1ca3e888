//! The Official Account access token: fetched once for many waiting requests, refreshed
//! before it expires, and never fetched in a storm.
//!
//! The default source is `POST /cgi-bin/stable_token` without `force_refresh`: repeated calls
//! return the same token and never invalidate another till's (`/cgi-bin/token` does, which is
//! the classic "intermittent 40001" of shared appids). A chain may instead run a central token
//! service (`wechat.token_url`).

use crate::secrets::read_secret_file;
use crate::wechat::errors::{TokenClass, classify_token};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most this many token fetches that reach WeChat in any rolling minute, whatever happens:
/// a wrong secret or a server that keeps revoking tokens must not burn the daily quota (2000
/// calls). Fetches that never connect cost no quota and are paced by the rows' own backoff.
pub const MAX_FETCHES_PER_MINUTE: usize = 4;
/// After WeChat says the configuration is wrong, wait this long before asking again (the
/// secret file is re-read each time, so fixing it needs no restart).
pub const MISCONFIGURED_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Retrying will not help until a person fixes the configuration.
    #[error("{reason}")]
    Misconfigured { reason: String, retry_in: Duration },
    /// The local guard refuses another fetch this minute.
    #[error("token fetches paused for {retry_in:?}: too many in the last minute")]
    Throttled { retry_in: Duration },
    /// The token endpoint could not be reached or answered badly; try later.
    #[error("access token unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub enum TokenSource {
    /// `POST {base}/cgi-bin/stable_token`.
    Stable { url: String },
    /// `GET url` on a central service answering `{"access_token","expires_in"}`.
    Central { url: String },
}

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Token>,
    /// When recent fetches that reached WeChat were made.
    fetches: VecDeque<Instant>,
    /// The last failure: when it happened, until when it holds for everyone, and what it was.
    /// Callers that were already waiting when it happened share it (single flight), and a
    /// misconfiguration holds for everyone for [`MISCONFIGURED_PAUSE`].
    failure: Option<Failure>,
}

struct Failure {
    at: Instant,
    holds_until: Instant,
    error: TokenError,
}

pub struct TokenManager {
    http: reqwest::Client,
    source: TokenSource,
    appid: String,
    secret_file: PathBuf,
    /// Held across a fetch: concurrent callers queue here and reuse the one fetched token.
    state: Mutex<State>,
    refreshes: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
}

impl TokenManager {
    pub fn new(
        http: reqwest::Client,
        source: TokenSource,
        appid: String,
        secret_file: PathBuf,
    ) -> Self {
        Self {
            http,
            source,
            appid,
            secret_file,
            state: Mutex::new(State::default()),
            refreshes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Tokens fetched so far.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token, fetching one if needed.
    pub async fn get(&self) -> Result<String, TokenError> {
        let arrived = Instant::now();
        let mut st = self.state.lock().await;
        let now = Instant::now();
        if let Some(t) = &st.current
            && now < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        if let Some(f) = &st.failure {
            if f.at >= arrived || now < f.holds_until {
                return Err(with_retry_in(
                    &f.error,
                    f.holds_until.saturating_duration_since(now),
                ));
            }
            st.failure = None;
        }
        while st
            .fetches
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            st.fetches.pop_front();
        }
        if st.fetches.len() >= MAX_FETCHES_PER_MINUTE {
            let oldest = st.fetches.front().copied().unwrap_or(now);
            let retry_in = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
            return Err(TokenError::Throttled { retry_in });
        }
        let (result, reached) = self.fetch().await;
        if reached {
            st.fetches.push_back(now);
        }
        match result {
            Ok((value, expires_in)) => {
                // Refresh a little before WeChat would: stable_token promises ≥ 300 s.
                let margin =
                    (expires_in / 5).clamp(Duration::from_secs(1), Duration::from_secs(300));
                st.current = Some(Token {
                    value: value.clone(),
                    refresh_at: Instant::now() + expires_in.saturating_sub(margin),
                });
                self.refreshes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    event = "token_refreshed",
                    source = self.source_name(),
                    "access token refreshed"
                );
                Ok(value)
            }
            Err(e) => {
                let at = Instant::now();
                let hold = match &e {
                    TokenError::Misconfigured { .. } => MISCONFIGURED_PAUSE,
                    _ => Duration::ZERO,
                };
                tracing::error!(event = "token_failed", error = %e, "cannot get an access token");
                st.failure = Some(Failure {
                    at,
                    holds_until: at + hold,
                    error: e.clone(),
                });
                Err(with_retry_in(&e, hold))
            }
        }
    }

    /// WeChat rejected `token` (40001/40014/42001): forget it, unless a newer one already
    /// replaced it.
    pub async fn invalidate(&self, token: &str) {
        let mut st = self.state.lock().await;
        if st.current.as_ref().is_some_and(|t| t.value == token) {
            st.current = None;
        }
    }

    fn source_name(&self) -> &'static str {
        match self.source {
            TokenSource::Stable { .. } => "stable_token",
            TokenSource::Central { .. } => "token_url",
        }
    }

    /// Fetches a token; also says whether the request reached the token server (and so may
    /// have cost quota).
    async fn fetch(&self) -> (Result<(String, Duration), TokenError>, bool) {
        match self.request().await {
            Ok((status, body)) => (parse_token_reply(status, &body), true),
            Err(e) => (Err(e), false),
        }
    }

    async fn request(&self) -> Result<(reqwest::StatusCode, bytes::Bytes), TokenError> {
        let request = match &self.source {
            TokenSource::Stable { url } => {
                let secret = read_secret_file(&self.secret_file).map_err(|reason| {
                    TokenError::Misconfigured {
                        reason: format!("wechat.secret_file: {reason}"),
                        retry_in: MISCONFIGURED_PAUSE,
                    }
                })?;
                self.http.post(url).json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": secret,
                    "force_refresh": false,
                }))
            }
            TokenSource::Central { url } => self.http.get(url),
        };
        let resp = request
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(describe_transport(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| TokenError::Unavailable(describe_transport(&e)))?;
        Ok((status, body))
    }
}

fn parse_token_reply(
    status: reqwest::StatusCode,
    body: &[u8],
) -> Result<(String, Duration), TokenError> {
    let reply: TokenReply = serde_json::from_slice(body).map_err(|e| {
        TokenError::Unavailable(format!("HTTP {status}: reply is not token JSON: {e}"))
    })?;
    if let Some(code) = reply.errcode.filter(|c| *c != 0) {
        let msg = reply.errmsg.unwrap_or_default();
        return Err(match classify_token(code) {
            TokenClass::Misconfigured(reason) => TokenError::Misconfigured {
                reason: reason.to_string(),
                retry_in: MISCONFIGURED_PAUSE,
            },
            TokenClass::Transient => TokenError::Unavailable(format!("errcode {code}: {msg}")),
        });
    }
    match (reply.access_token, reply.expires_in) {
        (Some(t), Some(e)) if !t.is_empty() && e > 0 => Ok((t, Duration::from_secs(e))),
        _ => Err(TokenError::Unavailable(format!(
            "HTTP {status}: reply has no access_token/expires_in"
        ))),
    }
}

fn with_retry_in(e: &TokenError, retry_in: Duration) -> TokenError {
    match e {
        TokenError::Misconfigured { reason, .. } => TokenError::Misconfigured {
            reason: reason.clone(),
            retry_in,
        },
        other => other.clone(),
    }
}

/// A transport error in words, without the URL (it may carry an access token).
pub fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reply cut off"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::card::CardSim;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    struct Fixture {
        _dir: tempfile::TempDir,
        sim: Arc<CardSim>,
        _server: crate::sim::http::SimServer,
        tokens: Arc<TokenManager>,
    }

    async fn fixture(secret_in_file: &str) -> Fixture {
        let sim = CardSim::new("wxA", "right");
        let server = sim.start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, secret_in_file).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tokens = Arc::new(TokenManager::new(
            reqwest::Client::new(),
            TokenSource::Stable {
                url: format!("{}/cgi-bin/stable_token", server.url()),
            },
            "wxA".into(),
            secret,
        ));
        Fixture {
            _dir: dir,
            sim,
            _server: server,
            tokens,
        }
    }

    #[tokio::test]
    async fn many_waiters_share_one_fetch() {
        let f = fixture("right").await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let t = f.tokens.clone();
            set.spawn(async move { t.get().await });
        }
        let mut seen = std::collections::HashSet::new();
        while let Some(r) = set.join_next().await {
            seen.insert(r.unwrap().unwrap());
        }
        assert_eq!(seen.len(), 1);
        assert_eq!(f.sim.calls().stable_token, 1);
    }

    #[tokio::test]
    async fn revocations_cannot_cause_a_storm() {
        let f = fixture("right").await;
        let mut throttled = false;
        for _ in 0..10 {
            match f.tokens.get().await {
                Ok(t) => f.tokens.invalidate(&t).await,
                Err(TokenError::Throttled { retry_in }) => {
                    assert!(retry_in <= Duration::from_secs(60));
                    throttled = true;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(throttled);
        assert_eq!(f.sim.calls().stable_token as usize, MAX_FETCHES_PER_MINUTE);
    }

    #[tokio::test]
    async fn wrong_secret_is_asked_once_then_held() {
        let f = fixture("wrong").await;
        for _ in 0..5 {
            match f.tokens.get().await {
                Err(TokenError::Misconfigured { reason, retry_in }) => {
                    assert!(reason.contains("40125"), "{reason}");
                    assert!(retry_in <= MISCONFIGURED_PAUSE);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(f.sim.calls().stable_token, 1);
    }

    #[tokio::test]
    async fn ip_not_whitelisted_is_a_misconfiguration() {
        let f = fixture("right").await;
        f.sim.update_faults(|x| x.ip_blocked = true);
        let e = f.tokens.get().await.unwrap_err();
        assert!(
            matches!(&e, TokenError::Misconfigured { reason, .. } if reason.contains("40164")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn decrypt_through_the_card_api() {
        let f = fixture("right").await;
        let base = f._server.url();
        let api =
            crate::wechat::card::CardApi::new(reqwest::Client::new(), &base, f.tokens.clone());
        let enc = f.sim.encrypt("751234212312");
        match api.decrypt(&enc).await {
            crate::wechat::card::Answer::Ok { reply, .. } => assert_eq!(reply.code, "751234212312"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            api.decrypt("bogus").await,
            crate::wechat::card::Answer::Errcode { errcode: 40075, .. }
        ));
    }
}
