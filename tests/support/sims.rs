//! The simulated WeChat APIs, each on a runtime of its own so tests stay plain synchronous
//! code.

use super::*;
use redeemd::sim::card::CardSim;
use redeemd::sim::card::SimCode;
use redeemd::sim::http::SimServer;
use redeemd::sim::pay::PayIdentity;
use redeemd::sim::pay::PaySim;
use redeemd::sim::pay::{generate_key, pem};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

/// The simulated WeChat Pay API: one simulator behind a primary and a backup host.
pub struct PayParts {
    pub sim: Arc<PaySim>,
    pub primary: SimServer,
    pub backup: SimServer,
}

/// The simulated card API (and, for coupon tests, WeChat Pay) on its own runtime.
pub struct Sim {
    pub card: Arc<CardSim>,
    server: SimServer,
    pub pay: Option<PayParts>,
    rt: tokio::runtime::Runtime,
}

impl Sim {
    pub fn start() -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let card = CardSim::new(APPID, SECRET);
        let server = rt.block_on(card.start()).expect("start sim");
        Sim {
            card,
            server,
            pay: None,
            rt,
        }
    }

    /// Adds a WeChat Pay simulator; writes the merchant key (0600) and the WeChat Pay
    /// public key into `dir`.
    pub fn start_pay(&mut self, dir: &Path) {
        let (merchant, der) = generate_key().expect("merchant key");
        let key = dir.join("apiclient_key.pem");
        std::fs::write(&key, pem("PRIVATE KEY", &der)).expect("key file");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let sim = PaySim::new(
            PayIdentity {
                mchid: MCHID.into(),
                appid: PAY_APPID.into(),
                merchant_serial: MERCHANT_SERIAL.into(),
                public_key_id: PUB_KEY_ID.into(),
            },
            merchant.public_spki_der().expect("spki"),
        )
        .expect("pay sim");
        std::fs::write(dir.join("pub_key.pem"), sim.public_key_pem()).expect("pub key");
        let primary = self.rt.block_on(sim.start()).expect("primary");
        let backup = self.rt.block_on(sim.start()).expect("backup");
        self.pay = Some(PayParts {
            sim,
            primary,
            backup,
        });
    }

    pub fn pay(&self) -> &Arc<PaySim> {
        &self.pay.as_ref().expect("a coupon till").sim
    }

    pub fn set_pay_down(&self, primary: bool, down: bool) {
        let p = self.pay.as_ref().expect("a coupon till");
        let server = if primary { &p.primary } else { &p.backup };
        self.rt
            .block_on(server.set_down(down))
            .expect("pay up/down");
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn set_down(&self, down: bool) {
        self.rt
            .block_on(self.server.set_down(down))
            .expect("sim up/down");
    }

    /// Registers codes as valid, unused cards.
    pub fn add_codes<S: AsRef<str>>(&self, codes: &[S]) {
        for c in codes {
            self.card.add_code(c.as_ref(), SimCode::normal(CARD_ID));
        }
    }
}
