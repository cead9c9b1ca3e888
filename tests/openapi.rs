//! `docs/openapi.yaml` describes the running daemon: every path is called, and every JSON
//! answer (and event) is validated against the schema the file gives for its path, method
//! and status. An answer whose status the file does not list fails, as does a path the test
//! never reached, so the file cannot drift from the code.

mod support;

use redeemd::sim::card::SimCard;
use redeemd::sim::card::SimCode;
use serde_json::{Value, json};
use support::*;

#[test]
fn every_answer_matches_the_openapi_file() {
    let mut spec = Spec::load("docs/openapi.yaml");
    let till = Till::with_coupons(Setup {
        online_wait: "800ms",
        ..Setup::default()
    });
    let card = &till.sim.card;
    card.add_card(CARD_ID, SimCard::cash("满100减10元", 1000, 10000));
    let (card_code, member) = ("777800000001", "777800000002");
    till.sim.add_codes(&[card_code]);
    card.add_card("pMEMBER", SimCard::member("会员卡"));
    card.add_code(member, SimCode::normal("pMEMBER"));
    let pay = till.sim.pay();
    pay.add_stock(STOCK_ID, "满50减5元", 500, 5000);
    let (coupon, slow_coupon) = ("BFOPENAPI0001", "BFOPENAPI0002");
    pay.add_coupon(coupon, STOCK_ID);
    pay.add_coupon(slow_coupon, STOCK_ID);
    let d = till.start();
    let base = d.http_url();
    let mut events = Sse::connect(&base, "");

    let call = |spec: &mut Spec,
                method: &str,
                template: &str,
                path: &str,
                body: Option<Value>|
     -> HttpResponse {
        let r = match body {
            Some(b) => post_json(&base, path, &b),
            None => http(method, &format!("{base}{path}"), &[], b""),
        };
        spec.check(method, template, &r);
        r
    };

    for p in ["/", "/kiosk", "/healthz", "/metrics", "/v1/export.csv"] {
        let r = call(&mut spec, "GET", p, p, None);
        assert_eq!(r.status, 200, "{p}");
    }
    call(
        &mut spec,
        "GET",
        "/v1/export.csv",
        "/v1/export.csv?since=someday",
        None,
    );

    let scan =
        |spec: &mut Spec, body: Value| call(spec, "POST", "/v1/scans", "/v1/scans", Some(body));
    let redeemed = scan(
        &mut spec,
        json!({ "code": card_code, "order_id": "O-1", "amount": 20000, "cashier": "王芳" }),
    )
    .json();
    assert_eq!(redeemed["outcome"], "redeemed", "{redeemed}");
    let card_id = redeemed["id"].as_i64().expect("id");
    scan(&mut spec, json!({ "code": member }));
    scan(&mut spec, json!({ "code": "134567890123456789" }));
    let used = scan(&mut spec, json!({ "code": coupon })).json();
    let coupon_id = used["id"].as_i64().expect("id");
    let slow = scan(&mut spec, json!({ "code": slow_coupon })).json();
    let slow_id = slow["id"].as_i64().expect("id");
    scan(&mut spec, json!({}));
    scan(&mut spec, json!({ "code": "" }));
    scan(&mut spec, json!({ "code": "1", "encrypt_code": "x" }));
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[("Content-Type", "text/plain")],
        b"x",
    );
    spec.check("POST", "/v1/scans", &r);

    // Events: answers, settlements, scanner states.
    let outcome = events.wait(|name, v| name == "message" && v["code"] == card_code);
    spec.component("Outcome", &outcome, "an outcome event");
    let scanner = events.wait(|name, _| name == "scanner");
    spec.component("ScannerStatus", &scanner, "a scanner event");

    for p in [
        "/v1/redemptions",
        "/v1/redemptions?order_id=O-1&limit=5",
        "/v1/redemptions?state=bogus",
    ] {
        call(&mut spec, "GET", "/v1/redemptions", p, None);
    }
    let t = "/v1/redemptions/{id}";
    // A path that is not UTF-8 once decoded: refused as JSON, like any other refusal.
    let bad = call(&mut spec, "GET", t, "/v1/redemptions/%FF", None);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["error"].is_string(), "{}", bad.body);
    let detail = call(
        &mut spec,
        "GET",
        t,
        &format!("/v1/redemptions/{card_id}"),
        None,
    );
    assert!(
        detail.json()["calls"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{}",
        detail.body
    );
    call(&mut spec, "GET", t, "/v1/redemptions/999999", None);

    let t = "/v1/redemptions/{id}/order";
    let order = |spec: &mut Spec, id: i64, body: Value| {
        call(
            spec,
            "POST",
            t,
            &format!("/v1/redemptions/{id}/order"),
            Some(body),
        )
    };
    assert_eq!(
        order(
            &mut spec,
            coupon_id,
            json!({ "order_id": "O-2", "amount": 8000 })
        )
        .status,
        200
    );
    assert_eq!(
        order(&mut spec, coupon_id, json!({ "order_id": "O-3" })).status,
        409
    );
    assert_eq!(
        order(&mut spec, coupon_id, json!({ "amount": 1 })).status,
        400
    );
    assert_eq!(
        order(&mut spec, 999999, json!({ "order_id": "O-4" })).status,
        404
    );

    let t = "/v1/redemptions/{id}/void";
    let void = |spec: &mut Spec, id: i64, body: Value| {
        call(
            spec,
            "POST",
            t,
            &format!("/v1/redemptions/{id}/void"),
            Some(body),
        )
    };
    assert_eq!(
        void(
            &mut spec,
            coupon_id,
            json!({ "reason": "退货", "by": "店长" })
        )
        .status,
        200
    );
    assert_eq!(
        void(&mut spec, coupon_id, json!({ "reason": "again" })).status,
        200
    );
    assert_eq!(
        void(&mut spec, card_id, json!({ "reason": "退货" })).status,
        409
    );
    pay.update_faults(|f| f.return_server_error = 1000);
    assert_eq!(
        void(&mut spec, slow_id, json!({ "reason": "退货" })).status,
        202
    );
    assert_eq!(
        void(&mut spec, slow_id, json!({ "reason": " " })).status,
        400
    );
    assert_eq!(
        void(&mut spec, 999999, json!({ "reason": "x" })).status,
        404
    );
    let settled =
        events.wait(|name, v| name == "settled" && v["id"] == card_id && v["state"] == "review");
    spec.component("Redemption", &settled, "a settled event");

    let t = "/v1/redemptions/{id}/resolve";
    let resolve = |spec: &mut Spec, id: i64, body: Value| {
        call(
            spec,
            "POST",
            t,
            &format!("/v1/redemptions/{id}/resolve"),
            Some(body),
        )
    };
    assert_eq!(
        resolve(
            &mut spec,
            card_id,
            json!({ "note": "已补偿", "state": "rejected" })
        )
        .status,
        200
    );
    assert_eq!(
        resolve(&mut spec, card_id, json!({ "note": "again" })).status,
        409
    );
    assert_eq!(
        resolve(&mut spec, card_id, json!({ "note": "" })).status,
        400
    );
    assert_eq!(
        resolve(&mut spec, 999999, json!({ "note": "x" })).status,
        404
    );

    // The stream never ends, so its events stand for its answer.
    spec.reached.insert(("GET".into(), "/v1/events".into()));
    spec.every_operation_reached();
    d.kill9();
}

/// The schema `s` with its `$ref` (and a `oneOf` with null) followed to the constraint.
fn resolve(spec: &Spec, s: &Value) -> Value {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return resolve(spec, &spec.doc["components"]["schemas"][name]);
    }
    // `oneOf: [X, null]` is X; an object's own `oneOf` (which fields it requires) is not.
    if let Some(alts) = s["oneOf"].as_array()
        && s["properties"].is_null()
        && let Some(first) = alts.iter().find(|a| a["type"] != "null")
    {
        return resolve(spec, first);
    }
    s.clone()
}

/// For one documented constraint: the values at its edges it allows (`true`) and the
/// values past them it forbids (`false`).
fn edges(s: &Value) -> Vec<(Value, bool)> {
    let mut cases = Vec::new();
    if let Some(max) = s["maxLength"].as_u64() {
        cases.push((json!("字".repeat(max as usize)), true));
        cases.push((json!("x".repeat(max as usize + 1)), false));
    }
    if s["minLength"].as_u64() == Some(1) {
        cases.push((json!("y"), true));
        cases.push((json!(""), false));
    }
    if s["pattern"].is_string() {
        cases.push((json!("a\u{1b}[2J"), false));
        cases.push((json!("a\u{0}"), false));
    }
    if let Some(min) = s["minimum"].as_i64() {
        cases.push((json!(min), true));
        cases.push((json!(min - 1), false));
    }
    if let Some(max) = s["maximum"].as_i64() {
        cases.push((json!(max), true));
        cases.push((json!(max + 1), false));
    }
    if let Some(e) = s["enum"].as_array() {
        cases.extend(e.iter().filter(|v| !v.is_null()).map(|v| (v.clone(), true)));
        cases.push((json!("no-such-value"), false));
    }
    cases
}

/// The other direction: for every operation with a body or query parameters, each value
/// that breaks a documented constraint is refused with a documented 4xx, and the values at
/// the constraint's edges are accepted (any documented answer but 400/422).
#[test]
fn every_documented_constraint_is_enforced_and_its_edges_accepted() {
    let spec = Spec::load("docs/openapi.yaml");
    let till = Till::new(Setup::default());
    till.sim.set_down(true);
    let d = till.start();
    let base = d.http_url();
    let id = post_json(&base, "/v1/scans", &json!({ "code": "777900000001" })).json()["id"]
        .as_i64()
        .expect("a row");
    let mut tried = 0;
    let mut fresh = 10;
    let mut check = |spec: &Spec, template: &str, what: String, r: HttpResponse, valid: bool| {
        tried += 1;
        let documented = &spec.doc["paths"][template];
        let method = if documented["post"].is_object() {
            "post"
        } else {
            "get"
        };
        assert!(
            documented[method]["responses"][r.status.to_string()].is_object(),
            "{what} → {} is not documented: {}",
            r.status,
            r.body
        );
        if valid {
            assert!(
                ![400, 422].contains(&r.status),
                "{what} allowed by the file, refused: {}",
                r.body
            );
        } else {
            assert!(
                r.status == 400 || r.status == 422,
                "{what} forbidden by the file, answered {}: {}",
                r.status,
                r.body
            );
        }
    };
    let bodies = [
        ("/v1/scans", "/v1/scans".to_string(), json!({})),
        (
            "/v1/redemptions/{id}/order",
            format!("/v1/redemptions/{id}/order"),
            json!({ "order_id": "O-1" }),
        ),
        (
            "/v1/redemptions/{id}/resolve",
            format!("/v1/redemptions/{id}/resolve"),
            json!({ "note": "checked" }),
        ),
        (
            "/v1/redemptions/{id}/void",
            format!("/v1/redemptions/{id}/void"),
            json!({ "reason": "why" }),
        ),
    ];
    for (template, path, base_body) in bodies {
        let schema = resolve(
            &spec,
            &spec.doc["paths"][template]["post"]["requestBody"]["content"]["application/json"]["schema"],
        );
        let props = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut sent = 0;
        for (name, prop) in props {
            // A scan's code is what makes it a scan; each one gets a new code below.
            if name == "code" || name == "encrypt_code" {
                continue;
            }
            for (v, valid) in edges(&resolve(&spec, &prop)) {
                let mut body = base_body.clone();
                body[&name] = v.clone();
                if template == "/v1/scans" {
                    fresh += 1;
                    body["code"] = json!(format!("7779{fresh:08}"));
                }
                let r = post_json(&base, &path, &body);
                sent += 1;
                check(
                    &spec,
                    template,
                    format!("POST {template} {name}={v}"),
                    r,
                    valid,
                );
            }
        }
        assert!(sent > 2, "{template}: only {sent} values tried");
    }
    for param in spec.doc["paths"]["/v1/redemptions"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
    {
        let name = param["name"].as_str().unwrap_or_default();
        for (v, valid) in edges(&resolve(&spec, &param["schema"])) {
            let text = v.as_str().map_or(v.to_string(), String::from);
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(name, &text)
                .finish();
            let r = get(&base, &format!("/v1/redemptions?{q}"));
            check(
                &spec,
                "/v1/redemptions",
                format!("GET /v1/redemptions {name}={v}"),
                r,
                valid,
            );
        }
    }
    assert!(tried > 40, "tried {tried} values");
    d.kill9();
}
