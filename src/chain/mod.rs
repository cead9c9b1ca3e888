//! The till's side of the chain: its ledger's row versions and a status beat,
//! published to its store's JetStream stream `REDEEMD_EVENTS`, from which HQ's stream
//! sources them over the leaf-node link ([`crate::fleet`] reads them there).
//!
//! The outbox (`ledger::events`) is the cursor: an entry goes only once the stream has
//! acknowledged it, so a crash, a store outage or a day offline ends in a republish of
//! what is missing, oldest first, which the stream (`Nats-Msg-Id`) and HQ (row versions)
//! both de-duplicate.

pub mod publisher;
