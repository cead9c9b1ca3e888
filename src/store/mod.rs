//! The store-wide guard (issue 15): every till of a store claims each code in a NATS
//! JetStream key-value bucket before it redeems or accepts it. This is its first part: the
//! claim itself, against real servers; the intake does not use it yet.

pub mod claim;
pub mod guard;
