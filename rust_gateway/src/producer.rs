//! Calls to the producer over HTTP, through one shared keep-alive client.
//!
//! - `GET /api/users?count=N`: the users as JSON (the REST path).
//! - `GET /api/profiles?count=N`: the profiles (the second dataset) as JSON (the REST
//!   path of `/api/profiles-via-api`).
//! - `GET /api/write-to-shm?count=N&slot=S&request_id=R&deadline_ms=D`: write the users
//!   into slot S for request R, then answer where (the shared-memory path's signal). D is
//!   when this gateway stops waiting (ms since the Unix epoch; both processes share the
//!   machine's clock): a producer that reaches the write later refuses it, so a late write
//!   never lands after the slot's quarantine, in a slot that serves another request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::settings::Settings;

pub const USERS_ENDPOINT: &str = "/api/users";
pub const PROFILES_ENDPOINT: &str = "/api/profiles";
pub const WRITE_ENDPOINT: &str = "/api/write-to-shm";

/// Idle connections kept per host: enough for every concurrent request to reuse one.
const POOL_MAX_IDLE_PER_HOST: usize = 128;
/// Shorter than uvicorn's 5 s keep-alive, so the client drops an idle connection
/// before the server does and never sends a request into a closing socket.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Longest error body quoted from the producer.
const DETAIL_LIMIT: usize = 300;

/// The pooled client every producer call goes through.
///
/// # Errors
/// A sentence if the HTTP client cannot be built.
pub fn build_client(settings: &Settings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(settings.producer_timeout())
        .connect_timeout(settings.producer_timeout())
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .http1_only()
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the HTTP client for the producer: {e}"))
}

/// What went wrong on a call to the producer. The gateway's answer to each is decided
/// in one place, `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// No connection could be made, or it broke.
    #[error("the producer at {url} is unavailable")]
    Unavailable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No answer within the timeout, or the producer reached the write after the
    /// deadline it was given and refused it (its 504).
    #[error("the producer did not answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// The answer is larger than the gateway accepts.
    #[error("the producer's answer from {endpoint} is {size}, more than the limit of {limit} bytes")]
    AnswerTooLarge { endpoint: &'static str, size: AnswerSize, limit: u64 },
    /// The producer refused a payload too large for it (its 507 or 413), saying why.
    #[error("{detail}")]
    PayloadTooLarge { detail: String },
    /// The producer answered another error status.
    #[error("the producer answered {status} to {endpoint}: {detail}")]
    Refused { status: u16, endpoint: &'static str, detail: String },
    /// A 2xx answer whose body is not what the endpoint answers.
    #[error("the producer's answer to {endpoint} was not understood: {source}")]
    Undecodable {
        endpoint: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The producer wrote another slot or request than the one asked for.
    #[error("it wrote slot {wrote_slot} for request {wrote_request}, but slot {slot} for request {request_id} was asked for")]
    WrongSlot { slot: u32, request_id: u64, wrote_slot: u32, wrote_request: u64 },
    /// The producer wrote an encoding the gateway does not serve.
    #[error("the payload encoding is '{encoding}', not 'json'")]
    WrongEncoding { encoding: String },
}

/// How large an answer over the limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSize {
    /// Its announced length, refused before reading.
    Announced(u64),
    /// Unannounced; refused once the bytes read passed the limit.
    Larger,
}

impl std::fmt::Display for AnswerSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Announced(length) => write!(f, "{length} bytes"),
            Self::Larger => f.write_str("larger"),
        }
    }
}

impl ProducerError {
    /// The innermost cause of a transport failure ("Connection refused (os error
    /// 111)"), the part of the chain a user can act on.
    #[must_use]
    pub fn transport_reason(source: &reqwest::Error) -> String {
        let mut reason = source.to_string();
        let mut inner = std::error::Error::source(source);
        while let Some(cause) = inner {
            reason = cause.to_string();
            inner = cause.source();
        }
        reason
    }
}

/// A failed producer call, and whether the producer may still be writing the slot.
#[derive(Debug)]
pub struct CallFailure {
    pub error: ProducerError,
    /// True unless the producer is known not to act on the request: it answered, or no
    /// connection was ever made. A slot whose call failed this way goes to quarantine.
    pub may_still_write: bool,
}

/// The producer's answer to `/api/write-to-shm`.
#[derive(Debug, Clone, Deserialize)]
pub struct WriteAnswer {
    pub path: String,
    pub epoch: u64,
    pub slot: u32,
    pub request_id: u64,
    pub sequence: u64,
    pub length: u64,
    pub encoding: String,
}

/// The first `count` users as the producer serializes them.
///
/// # Errors
/// The producer is unreachable, too slow, or answered an error.
pub async fn get_users(
    client: &reqwest::Client,
    settings: &Settings,
    count: u32,
    request_id: u64,
) -> Result<Bytes, ProducerError> {
    let url = format!("{}{USERS_ENDPOINT}?count={count}", settings.producer_url);
    call(client, settings, &url, request_id, USERS_ENDPOINT).await.map_err(|f| f.error)
}

/// The first `count` profiles as the producer serializes them.
///
/// # Errors
/// The producer is unreachable, too slow, or answered an error.
pub async fn get_profiles(
    client: &reqwest::Client,
    settings: &Settings,
    count: u32,
    request_id: u64,
) -> Result<Bytes, ProducerError> {
    let url = format!("{}{PROFILES_ENDPOINT}?count={count}", settings.producer_url);
    call(client, settings, &url, request_id, PROFILES_ENDPOINT).await.map_err(|f| f.error)
}

/// Asks the producer to write the first `count` users into `slot` for `request_id`.
///
/// # Errors
/// A [`CallFailure`] saying what failed and whether a late write is possible.
pub async fn write_to_shm(
    client: &reqwest::Client,
    settings: &Settings,
    count: u32,
    slot: u32,
    request_id: u64,
) -> Result<WriteAnswer, CallFailure> {
    let deadline = SystemTime::now() + settings.producer_timeout();
    let deadline_ms =
        deadline.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let url = format!(
        "{}{WRITE_ENDPOINT}?count={count}&slot={slot}&request_id={request_id}&deadline_ms={deadline_ms}",
        settings.producer_url
    );
    let body = call(client, settings, &url, request_id, WRITE_ENDPOINT).await?;
    let answer: WriteAnswer = serde_json::from_slice(&body).map_err(|source| CallFailure {
        error: ProducerError::Undecodable { endpoint: WRITE_ENDPOINT, source },
        may_still_write: false,
    })?;
    let mismatch = if answer.slot != slot || answer.request_id != request_id {
        Some(ProducerError::WrongSlot { slot, request_id, wrote_slot: answer.slot, wrote_request: answer.request_id })
    } else if answer.encoding != "json" {
        Some(ProducerError::WrongEncoding { encoding: answer.encoding.clone() })
    } else {
        None
    };
    match mismatch {
        Some(error) => Err(CallFailure {
            error,
            // It wrote somewhere we did not ask for: keep our slot out of use for a while.
            may_still_write: true,
        }),
        None => Ok(answer),
    }
}

/// One GET to the producer; the body of a 2xx answer, or what went wrong.
async fn call(
    client: &reqwest::Client,
    settings: &Settings,
    url: &str,
    request_id: u64,
    endpoint: &'static str,
) -> Result<Bytes, CallFailure> {
    let transport = |e: reqwest::Error| transport_failure(settings, e);
    let mut response = client.get(url).header("x-request-id", request_id).send().await.map_err(transport)?;
    let status = response.status();
    // Read under the limit, piece by piece: a producer that answers too much is refused
    // before its answer fills the gateway's memory.
    let limit = settings.max_payload_bytes;
    let too_large = |size: AnswerSize| CallFailure {
        error: ProducerError::AnswerTooLarge { endpoint, size, limit },
        may_still_write: false,
    };
    let announced = response.content_length();
    if let Some(length) = announced.filter(|length| *length > limit) {
        return Err(too_large(AnswerSize::Announced(length)));
    }
    let mut body = BytesMut::with_capacity(usize::try_from(announced.unwrap_or(0)).unwrap_or(0));
    while let Some(piece) = response.chunk().await.map_err(transport)? {
        if (body.len() + piece.len()) as u64 > limit {
            return Err(too_large(AnswerSize::Larger));
        }
        body.extend_from_slice(&piece);
    }
    let body = body.freeze();
    if status.is_success() {
        return Ok(body);
    }
    let detail = error_detail(&body);
    tracing::warn!(endpoint, status = status.as_u16(), detail = %detail, "the producer answered an error");
    let error = if status == StatusCode::INSUFFICIENT_STORAGE || status == StatusCode::PAYLOAD_TOO_LARGE {
        ProducerError::PayloadTooLarge { detail }
    } else if status == StatusCode::GATEWAY_TIMEOUT {
        // The producer reached the write after our deadline and refused it.
        ProducerError::Timeout { timeout_ms: settings.producer_timeout_ms }
    } else {
        ProducerError::Refused { status: status.as_u16(), endpoint, detail }
    };
    Err(CallFailure { error, may_still_write: false })
}

fn transport_failure(settings: &Settings, e: reqwest::Error) -> CallFailure {
    if e.is_timeout() {
        return CallFailure {
            error: ProducerError::Timeout { timeout_ms: settings.producer_timeout_ms },
            may_still_write: true,
        };
    }
    tracing::warn!(error = %e, reason = %ProducerError::transport_reason(&e), "producer call failed");
    let may_still_write = !e.is_connect();
    CallFailure { error: ProducerError::Unavailable { url: settings.producer_url.clone(), source: e }, may_still_write }
}

/// The `detail` of a `{"error", "detail"}` body, or the body itself, shortened.
fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        detail: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.detail,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let text = if text.is_empty() { "no detail given".to_owned() } else { text };
    match text.char_indices().nth(DETAIL_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_prefers_the_json_detail() {
        assert_eq!(error_detail(br#"{"error":"x","detail":"too big"}"#), "too big");
        assert_eq!(error_detail(b"  plain text \n"), "plain text");
        assert_eq!(error_detail(b""), "no detail given");
        assert_eq!(error_detail("é".repeat(400).as_bytes()).chars().count(), DETAIL_LIMIT + 3);
    }
}
