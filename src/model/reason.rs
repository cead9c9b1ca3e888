//! Reasons in the reader's language. The ledger keeps every reason as the English sentence
//! redeemd wrote (with WeChat's own words inside, where it quoted them); this table gives
//! each a stable `reason_code` and its zh-CN wording, for the answers, the events, the pages,
//! the CLI and the CSV alike. Pure.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Language {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Language {
    pub fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "zh-CN" | "zh" => Some(Language::ZhCn),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// How a stored reason is recognised: its start, or a marker it contains.
enum Match {
    Starts(&'static str),
    Contains(&'static str),
}

use Match::{Contains, Starts};

/// (how it is recognised, reason_code, zh-CN). Order matters: the first match wins, so the
/// more specific come first. Codes are stable: tools and people depend on them.
const TABLE: &[(Match, &str, &str)] = &[
    (
        Starts(crate::model::product_coupon::NOT_ISSUED),
        "not_issued",
        "不是品牌发放的商品券（总部登记中没有此券），未提交核销",
    ),
    (
        Starts(crate::model::product_coupon::NOT_EFFECTIVE),
        "not_effective",
        "商品券当前不可用（尚未生效或已失效）",
    ),
    (
        Starts(crate::model::product_coupon::EXPIRED),
        "expired",
        "商品券已过期",
    ),
    (
        Starts(crate::model::product_coupon::NOT_FOR_THIS_STORE),
        "not_for_this_store",
        "此商品券不适用于本门店",
    ),
    (
        Starts(crate::model::product_coupon::ALREADY_USED),
        "already_used",
        "商品券已核销",
    ),
    (
        Starts(crate::model::product_coupon::BUNDLE_NOT_SUPPORTED),
        "bundle_not_supported",
        "多次核销的商品券暂不支持在收银台核销，未提交",
    ),
    (
        Starts(crate::model::product_coupon::REGISTRY_UNAVAILABLE),
        "registry_unavailable",
        "暂时无法核对商品券（门店的总部登记副本无应答），未提交；请稍后重扫",
    ),
    (
        Starts(crate::model::product_coupon::INCOMPLETE_ROW),
        "incomplete_row",
        "台账记录缺少商品券编号或支付订单，未提交核销：请店长核对",
    ),
    (
        Starts(crate::model::product_coupon::USE_REFUSED),
        "use_refused_after_payment",
        "顾客已付款，微信支付却拒绝核销此商品券（可能已在别处核销）：请店长核对",
    ),
    (
        Starts(crate::model::product_coupon::USED_BY_ANOTHER_REQUEST),
        "used_by_another_request",
        "微信支付显示此商品券已由另一笔请求核销：请店长核对",
    ),
    (
        Starts(crate::model::product_coupon::HOLD_EXPIRED),
        "hold_expired",
        "已为订单保留但超时未付款，券已释放，未核销",
    ),
    (
        Starts("already redeemed elsewhere"),
        "already_redeemed_elsewhere",
        "已在别处核销",
    ),
    (
        Starts("payment code, not a coupon"),
        "payment_code",
        "这是付款码，不是优惠券",
    ),
    (
        Starts("member card, not a coupon"),
        "member_card",
        "会员卡，不是优惠券，不予核销",
    ),
    (
        Starts("card type not yet known"),
        "card_type_unknown",
        "卡券类型尚未确认，暂不核销",
    ),
    (
        Starts("card type "),
        "card_type_not_accepted",
        "本收银台不受理此类卡券",
    ),
    (
        Starts("sale below the coupon's minimum"),
        "below_minimum",
        "消费金额未达到优惠券使用门槛",
    ),
    (
        Starts("not a code this till accepts"),
        "not_accepted_here",
        "本收银台不受理此码",
    ),
    (
        Starts("the route found no code"),
        "no_code_in_scan",
        "扫码内容中没有券码",
    ),
    (Starts("unreadable scan"), "unreadable", "无法识别的扫码"),
    (
        Starts("already scanned at till "),
        "claimed_elsewhere",
        "已在本店另一收银台扫过，不予重复核销",
    ),
    (
        Starts("claimed at till "),
        "claim_abandoned",
        "另一收银台曾认领此券但未记录，需店长核实",
    ),
    (
        Starts("taken at two tills"),
        "taken_at_two_tills",
        "门店认领服务不可用时两台收银台都受理了此券，请核实哪一台给了优惠",
    ),
    (
        Starts("claimed here at "),
        "claim_abandoned_here",
        "本机认领此券后未及记录即停止，另一收银台已拒绝此券：请向该收银台核实顾客情况",
    ),
    (
        Starts("claimed in the store guard"),
        "claim_unreadable",
        "门店认领记录无法识别，需店长核实",
    ),
    (
        Contains("WeChat Pay reported this code used outside the chain's tills"),
        "redeemed_outside",
        "微信未应答，且微信支付通知此券已在门店收银台之外核销，拒绝受理",
    ),
    (
        Contains("the chain records this code as already redeemed at "),
        "redeemed_at_other_store",
        "微信未应答，且总部记录此券已在其他门店核销，拒绝受理",
    ),
    (
        Contains("(offline.require_store_guard)"),
        "refused_offline_no_store_guard",
        "微信未应答，且无法向门店确认其他收银台是否已用此券，拒绝受理",
    ),
    (
        Contains("value is not known"),
        "refused_offline_unknown_value",
        "微信未应答，此券面值未知，不可离线受理",
    ),
    (
        Contains("above offline.max_pending_value"),
        "refused_offline_max_pending_value",
        "微信未应答，待确认的离线核销总额已达上限，拒绝受理",
    ),
    (
        Contains("offline.max_value"),
        "refused_offline_max_value",
        "微信未应答，此券面值超过离线受理上限",
    ),
    (
        Contains("(offline.max_pending)"),
        "refused_offline_max_pending",
        "微信未应答，待确认的离线核销笔数已达上限，拒绝受理",
    ),
    (
        Starts("refused at the till: WeChat did not answer"),
        "refused_offline_not_allowed",
        "微信未及时应答，此券不可离线受理",
    ),
    (
        Starts("refused at start"),
        "refused_at_start",
        "redeemd 在应答前停止，此券不可离线受理，已拒绝",
    ),
    (
        Starts("refused at the till while a use request"),
        "refused_while_unanswered",
        "收银台拒绝时核销请求尚无应答，请在商户平台核对此券",
    ),
    (
        Starts("accepted offline, then refused by WeChat"),
        "accepted_offline_then_refused",
        "离线受理后被微信拒绝",
    ),
    (
        Starts("invalid encrypted code"),
        "invalid_encrypted_code",
        "加密券码无效，无法解码",
    ),
    (
        Starts("invalid code"),
        "invalid_code",
        "无效券码：微信不认识此码，或不属于此卡券",
    ),
    (
        Starts("card deleted, being gifted"),
        "card_unavailable",
        "卡券已删除、转赠中、过期或已失效",
    ),
    (
        Starts("card status does not allow"),
        "card_status",
        "卡券状态不允许核销",
    ),
    (
        Starts("not within the card's valid time"),
        "not_valid_now",
        "不在卡券有效期内",
    ),
    (Starts("card expired"), "expired", "卡券已过期"),
    (Starts("card is being gifted"), "gifting", "卡券转赠中"),
    (
        Starts("card gift timed out"),
        "gift_timeout",
        "卡券转赠超时",
    ),
    (
        Starts("card deleted by its owner"),
        "deleted",
        "卡券已被用户删除",
    ),
    (Starts("card made unavailable"), "unavailable", "卡券已失效"),
    (
        Starts("card cannot be redeemed"),
        "card_status",
        "卡券状态不允许核销",
    ),
    (Starts("coupon not found"), "coupon_not_found", "券不存在"),
    (
        Starts("not allowed (appid"),
        "not_allowed",
        "无权核销此券（appid 未与商户号绑定，或不是本商户的券）",
    ),
    (
        Starts("refused by WeChat Pay"),
        "refused_by_wechat_pay",
        "微信支付拒绝核销",
    ),
    (
        Starts("voided before WeChat"),
        "voided",
        "整单已作废（此券未核销）",
    ),
    (
        Starts("voided after redemption"),
        "voided_card_redeemed",
        "核销后整单作废：卡券无法退回，请补偿顾客",
    ),
    (
        Starts("voided, but WeChat Pay refused"),
        "void_failed",
        "整单已作废，但微信支付拒绝退券",
    ),
    (
        Starts("redeemed after the till refused it"),
        "redeemed_after_refusal",
        "收银台拒绝后仍被核销，请处理",
    ),
    (
        Starts("not confirmed by WeChat within offline.max_age"),
        "max_age",
        "超过离线最长等待时间仍未获微信确认",
    ),
    (
        Starts("refused at the till, and whether WeChat"),
        "unknown_after_refusal",
        "收银台已拒绝，但微信是否已核销未知",
    ),
    (
        Starts("cannot record"),
        "cannot_record",
        "无法记录：账本写入失败，不予受理",
    ),
    (
        Starts("already redeemed here and given back"),
        "duplicate_returned",
        "此券已在本机核销并已退回",
    ),
    (
        Starts("already redeemed here"),
        "duplicate_redeemed",
        "此券已在本机核销",
    ),
    (
        Starts("already accepted here"),
        "duplicate_pending",
        "此券已在本机受理，等待微信确认",
    ),
    (
        Starts("already scanned here and rejected"),
        "duplicate_rejected",
        "此券已在本机扫描并被拒",
    ),
    (
        Starts("already scanned here and refused"),
        "duplicate_refused",
        "此券已在本机被拒绝受理",
    ),
    (
        Starts("already scanned here; waiting"),
        "duplicate_review",
        "此券已扫描，等待店长处理",
    ),
    (
        Starts("WeChat daily API quota exhausted"),
        "quota_exhausted",
        "微信每日接口调用次数已用完",
    ),
    (
        Contains("after an earlier attempt of ours went unanswered"),
        "unknown_after_unanswered",
        "此前的核销请求未获应答，可能已被本机核销，请核对",
    ),
    (
        Starts("WeChat rate limit"),
        "rate_limited",
        "微信限流，稍后自动重试",
    ),
    (
        Starts("WeChat system busy"),
        "wechat_busy",
        "微信系统繁忙，稍后自动重试",
    ),
    (
        Starts("WeChat rejected a freshly refreshed access token"),
        "access_token_rejected",
        "微信不接受刚刷新的 access_token，稍后自动重试",
    ),
    (
        Starts("unexpected WeChat errcode"),
        "unexpected_errcode",
        "微信返回了未知错误码，稍后自动重试",
    ),
    (
        Starts("WeChat Pay rejected the signature"),
        "signature_rejected",
        "微信支付不接受签名（请检查本机时钟），稍后自动重试",
    ),
    (
        Starts("WeChat asked us to slow down"),
        "throttled",
        "微信要求降低请求频率，稍后自动重试",
    ),
    (
        Starts("WeChat not reached"),
        "wechat_unreachable",
        "无法连接微信，稍后自动重试",
    ),
    (
        Starts("WeChat's answer was lost"),
        "answer_lost",
        "微信的应答丢失，将用同一请求再次询问",
    ),
    (Starts("will retry"), "retrying", "暂未核销，稍后自动重试"),
];

/// The code of a reason this table does not know.
pub const OTHER: &str = "other";

fn entry(reason: &str) -> Option<&'static (Match, &'static str, &'static str)> {
    TABLE.iter().find(|(m, _, _)| match m {
        Starts(p) => reason.starts_with(p),
        Contains(p) => reason.contains(p),
    })
}

/// The stable code of a stored reason; `other` for one this table does not know (WeChat's
/// errcodes redeemd does not know, transport errors).
pub fn code_of(reason: &str) -> &'static str {
    entry(reason).map_or(OTHER, |(_, code, _)| code)
}

/// A stored reason as `lang` reads it, and the `detail` to show beside it: the stored text
/// itself when the translation leaves something out (WeChat's own message, a number).
pub fn localized(reason: &str, lang: Language) -> (String, Option<String>) {
    match (lang, entry(reason)) {
        (Language::En, _) | (Language::ZhCn, None) => (reason.to_string(), None),
        (Language::ZhCn, Some((_, code, zh))) => {
            // The refusal it wraps, in the reader's language too.
            let text = match reason.split_once(": ") {
                Some((_, inner)) if *code == "accepted_offline_then_refused" => {
                    format!("{zh}：{}", localized(inner, lang).0)
                }
                _ => zh.to_string(),
            };
            (text, Some(reason.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_redeemd_writes_has_a_code_and_a_chinese_wording() {
        #[rustfmt::skip]
        let table = [
            ("already redeemed elsewhere", "already_redeemed_elsewhere"),
            ("payment code, not a coupon", "payment_code"),
            ("member card, not a coupon", "member_card"),
            ("card type GIFT not accepted by this till", "card_type_not_accepted"),
            ("card type not yet known: nothing is consumed before card/get says what the card is", "card_type_unknown"),
            ("sale below the coupon's minimum of ¥100", "below_minimum"),
            ("refused at the till: WeChat did not answer in time and this code may not be accepted offline", "refused_offline_not_allowed"),
            ("refused at the till: WeChat did not answer and 12 redemptions already await confirmation (offline.max_pending)", "refused_offline_max_pending"),
            ("refused at the till: WeChat did not answer and this code's value ¥20 is above offline.max_value (¥10)", "refused_offline_max_value"),
            ("refused at the till: WeChat did not answer and this code's value is not known (offline.max_value; offline.accept_unknown_value is off)", "refused_offline_unknown_value"),
            ("refused at the till: WeChat did not answer and ¥10 of offline acceptances already await confirmation; with this code's ¥10 that is above offline.max_pending_value (¥15)", "refused_offline_max_pending_value"),
            ("accepted offline, then refused by WeChat: already redeemed elsewhere", "accepted_offline_then_refused"),
            ("voided after redemption: card codes cannot be returned; compensate the customer", "voided_card_redeemed"),
            ("already redeemed here (first scanned 2026-12-01T10:00:00+08:00)", "duplicate_redeemed"),
            ("already scanned at till till-2 at 14:03", "claimed_elsewhere"),
            ("claimed at till till-2 at 14:03 and never recorded there: check till till-2 before giving the discount", "claim_abandoned"),
            ("claimed in the store guard with a value redeemd cannot read: a manager decides", "claim_unreadable"),
            ("taken at two tills: redeemed here while the store guard could not be asked, and till till-2 claimed the code at 14:03; check which till gave the discount", "taken_at_two_tills"),
            ("claimed here at 14:03 and never recorded (this till stopped first); till till-2 found the claim and turned the code away: ask till till-2 what the customer was told", "claim_abandoned_here"),
            ("refused at the till: WeChat did not answer and the store guard could not be asked whether another till has it (offline.require_store_guard)", "refused_offline_no_store_guard"),
            ("refused at the till: WeChat did not answer and the chain records this code as already redeemed at store store12 (till till-1, 2026-12-01 14:03)", "redeemed_at_other_store"),
            ("refused at the till: WeChat did not answer and WeChat Pay reported this code used outside the chain's tills (2026-12-01 14:03)", "redeemed_outside"),
            ("unexpected WeChat errcode 61007: api unauthorized", "unexpected_errcode"),
            ("WeChat not reached; will retry: error sending request: connection refused", "wechat_unreachable"),
            ("WeChat's answer was lost; will ask again: operation timed out", "answer_lost"),
            ("WeChat asked us to slow down; will retry: HTTP 503", "throttled"),
            ("will retry: HTTP 500 SYSTEM_ERROR", "retrying"),
            ("WeChat rate limit (45011)", "rate_limited"),
            ("something redeemd never wrote", "other"),
        ];
        for (reason, code) in table {
            assert_eq!(code_of(reason), code, "{reason}");
            let (zh, detail) = localized(reason, Language::ZhCn);
            if code == "other" {
                assert_eq!((zh.as_str(), detail), (reason, None));
            } else {
                assert!(!zh.is_ascii(), "{reason}: {zh}");
                assert_eq!(detail.as_deref(), Some(reason));
            }
            assert_eq!(localized(reason, Language::En), (reason.to_string(), None));
        }
        assert_eq!(
            localized(
                "accepted offline, then refused by WeChat: already redeemed elsewhere",
                Language::ZhCn
            )
            .0,
            "离线受理后被微信拒绝：已在别处核销"
        );
    }
}
