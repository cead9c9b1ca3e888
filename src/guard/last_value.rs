//! A key's last value in a stream of the till's store (a mirror of one of HQ's buckets),
//! read the short way once it is known to work.
//!
//! JetStream's direct get is answered by the stream itself, a few tenths of a millisecond
//! sooner than the JetStream API's `STREAM.MSG.GET` (JSON, the message in base64). But
//! a stream that is not there answers nothing to a direct get (the request waits for its
//! timeout), where the API says at once that there is no such stream, which for a till
//! means "not mirrored yet": nothing known. So the API is asked until it has shown that the
//! stream is there; from then on the direct get is. A direct get that gets no answer from a
//! server the API then answers is a stream that does not serve direct gets: the API is
//! asked from then on.

use crate::guard::nats::{Found, StoredMessage, direct_last_of_subject, find_last_of_subject};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How the next read is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Way {
    /// Through the API, until it shows the stream is there.
    Api = 0,
    /// With a direct get.
    Direct = 1,
    /// Through the API, after a direct get went unanswered: the server is down, the stream
    /// went away, or it does not serve direct gets.
    Suspect = 2,
    /// Through the API, for good: the stream does not serve direct gets.
    ApiOnly = 3,
}

/// What a read learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The stream answered: a value, or none for the key.
    Answered,
    /// The server said there is no such stream.
    NoStream,
    /// No answer within the timeout (or another failure).
    Failed,
}

/// The way after a read asked `way` and `heard` what it did.
pub fn next(way: Way, heard: Heard) -> Way {
    match (way, heard) {
        (Way::Api, Heard::Answered) => Way::Direct,
        (Way::Api, _) => Way::Api,
        (Way::Direct, Heard::Failed) => Way::Suspect,
        (Way::Direct, _) => Way::Direct,
        (Way::Suspect, Heard::Answered) => Way::ApiOnly,
        (Way::Suspect, Heard::NoStream) => Way::Api,
        (Way::Suspect, Heard::Failed) => Way::Suspect,
        (Way::ApiOnly, _) => Way::ApiOnly,
    }
}

/// Reads the last value of a subject of one stream on the till's store.
pub struct LastValue {
    client: async_nats::Client,
    stream: String,
    timeout: Duration,
    way: AtomicU8,
}

impl LastValue {
    pub fn new(client: async_nats::Client, stream: String, timeout: Duration) -> LastValue {
        LastValue {
            client,
            stream,
            timeout,
            way: AtomicU8::new(Way::Api as u8),
        }
    }

    fn way(&self) -> Way {
        match self.way.load(Ordering::Relaxed) {
            1 => Way::Direct,
            2 => Way::Suspect,
            3 => Way::ApiOnly,
            _ => Way::Api,
        }
    }

    /// The last message on `subject`, `None` if the stream has none or is not there; `Err`
    /// when the server did not answer within the timeout.
    pub async fn read(&self, subject: &str) -> Result<Option<StoredMessage>, String> {
        let way = self.way();
        let read = async {
            match way {
                Way::Direct => direct_last_of_subject(&self.client, &self.stream, subject)
                    .await
                    .map(|m| (m, Heard::Answered)),
                _ => find_last_of_subject(&self.client, "$JS.API", &self.stream, subject)
                    .await
                    .map(|found| match found {
                        Found::Message(m) => (Some(m), Heard::Answered),
                        Found::Nothing => (None, Heard::Answered),
                        Found::NoStream => (None, Heard::NoStream),
                    }),
            }
        };
        let (result, heard) = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok((m, heard))) => (Ok(m), heard),
            Ok(Err(e)) => (Err(e), Heard::Failed),
            Err(_) => (
                Err(format!(
                    "the store did not answer within {} ms",
                    self.timeout.as_millis()
                )),
                Heard::Failed,
            ),
        };
        let now = next(way, heard);
        if now != way {
            self.way.store(now as u8, Ordering::Relaxed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_get_is_taken_once_the_stream_is_known_and_left_when_it_goes_unanswered() {
        use Heard::*;
        use Way::*;
        let cases = [
            (Api, Answered, Direct),
            (Api, NoStream, Api),
            (Api, Failed, Api),
            (Direct, Answered, Direct),
            (Direct, Failed, Suspect),
            (Suspect, Answered, ApiOnly),
            (Suspect, NoStream, Api),
            (Suspect, Failed, Suspect),
            (ApiOnly, Answered, ApiOnly),
            (ApiOnly, NoStream, ApiOnly),
            (ApiOnly, Failed, ApiOnly),
        ];
        for (way, heard, want) in cases {
            assert_eq!(next(way, heard), want, "{way:?} then {heard:?}");
        }
    }
}
