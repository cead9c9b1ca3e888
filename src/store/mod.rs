//! The store's NATS (issues 15 and 16): every till of a store claims each code in a NATS
//! JetStream key-value bucket before it redeems or accepts it ([`guard`]), and reads the
//! chain's record of codes redeemed at other stores from its store's mirror of it
//! ([`redeemed`]).

pub mod claim;
pub mod guard;
pub mod nats;
pub mod redeemed;
