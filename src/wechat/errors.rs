//! WeChat's answers, classified once. Every errcode the daemon acts on is named here; the
//! rest of the crate only sees the classes.
//!
//! Match on `errcode`, never on `errmsg`: live messages get ` hint: [...]` / ` rid: ...`
//! appended.

/// What an errcode from the card API means for a redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardClass {
    Ok,
    /// 40099: the code has been consumed (by whom is for the caller to decide).
    Consumed,
    /// WeChat refused for good; the text is for the cashier.
    Refused(&'static str),
    /// The access token is invalid, not the latest, or expired: refresh once and retry.
    RefreshToken,
    /// Frequency limit: back off hard, retry later.
    Throttled,
    /// 45009: the account's daily quota for the API is used up; nothing gets through before
    /// WeChat's daily reset.
    QuotaExhausted,
    /// System busy: retry later, backing off hard.
    Busy,
    /// An errcode this version does not know: not a refusal we can show a cashier, so retry
    /// later (and log it); `max_age` sends the row to a person if it never clears.
    Unrecognised,
}

pub const ALREADY_REDEEMED_ELSEWHERE: &str = "already redeemed elsewhere";

pub fn classify_card(errcode: i64) -> CardClass {
    match errcode {
        0 => CardClass::Ok,
        40099 => CardClass::Consumed,
        40056 => CardClass::Refused("invalid code: unknown to WeChat, or not this card"),
        40127 => CardClass::Refused("card deleted, being gifted, expired or made unavailable"),
        40078 => CardClass::Refused("card status does not allow redemption"),
        40079 => CardClass::Refused("not within the card's valid time"),
        40075 => CardClass::Refused("invalid encrypted code"),
        40001 | 40014 | 42001 => CardClass::RefreshToken,
        45009 => CardClass::QuotaExhausted,
        45011 => CardClass::Throttled,
        -1 => CardClass::Busy,
        _ => CardClass::Unrecognised,
    }
}

/// The cashier's reason for a `user_card_status` other than `NORMAL`.
pub fn card_status_reason(status: &str) -> &'static str {
    match status {
        "CONSUMED" => ALREADY_REDEEMED_ELSEWHERE,
        "EXPIRE" => "card expired",
        "GIFTING" => "card is being gifted to someone else",
        "GIFT_TIMEOUT" => "card gift timed out",
        "DELETE" => "card deleted by its owner",
        "UNAVAILABLE" => "card made unavailable",
        _ => "card cannot be redeemed (unknown card status)",
    }
}

/// What an errcode from a token endpoint means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenClass {
    /// The merchant's configuration is wrong: retrying will not help, a person must act.
    Misconfigured(&'static str),
    /// Try again later.
    Transient,
}

pub fn classify_token(errcode: i64) -> TokenClass {
    match errcode {
        40013 => TokenClass::Misconfigured(
            "WeChat says the appid is invalid (40013): check wechat.appid",
        ),
        40125 => TokenClass::Misconfigured(
            "WeChat says the AppSecret is invalid (40125): check the file named by wechat.secret_file",
        ),
        40164 => TokenClass::Misconfigured(
            "WeChat refuses this till's IP address (40164): add it to the account's IP whitelist",
        ),
        40002 => TokenClass::Misconfigured("WeChat says grant_type is invalid (40002)"),
        _ => TokenClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_errcode_has_a_class() {
        use CardClass::*;
        let table = [
            (0, Ok),
            (40099, Consumed),
            (40001, RefreshToken),
            (40014, RefreshToken),
            (42001, RefreshToken),
            (45009, QuotaExhausted),
            (45011, Throttled),
            (-1, Busy),
            (12345, Unrecognised),
        ];
        for (code, class) in table {
            assert_eq!(classify_card(code), class, "{code}");
        }
        for code in [40056, 40127, 40078, 40079] {
            assert!(matches!(classify_card(code), Refused(_)), "{code}");
        }
    }

    #[test]
    fn token_errors() {
        for code in [40013, 40125, 40164] {
            assert!(matches!(classify_token(code), TokenClass::Misconfigured(_)));
        }
        assert_eq!(classify_token(-1), TokenClass::Transient);
    }

    #[test]
    fn statuses() {
        assert_eq!(card_status_reason("CONSUMED"), ALREADY_REDEEMED_ELSEWHERE);
        assert_eq!(card_status_reason("EXPIRE"), "card expired");
        assert!(card_status_reason("WHATEVER").contains("unknown"));
    }
}
