//! The store guard on the store's NATS: every till of a store claims each code in a
//! JetStream key-value bucket before it redeems or accepts it ([`bucket`]), and reads the
//! chain's record of codes redeemed at other stores from its store's mirror of it
//! ([`redeemed`]), and HQ's registry of product coupons ([`product_coupons`]), each key
//! read by [`last_value`]. [`nats`] is what reaching a NATS server takes, for the tills
//! and HQ.
//! What a claim holds and means is pure, in `model::claim`; the pipeline's side is
//! `redeem::store_guard`; the ledger's, `ledger::claims`.

pub mod bucket;
pub mod last_value;
pub mod nats;
pub mod product_coupons;
pub mod redeemed;
