//! The domain, at the bottom of the data flow: what a code, a scan, a row and its states
//! are, and the pure rules that move a row between states. Every other module may import
//! this one; it imports none of them (only leaf helpers: the clock's types and masking).

pub mod api;
pub mod backoff;
pub mod call;
pub mod catalog;
pub mod claim;
pub mod claim_key;
pub mod code;
pub mod event;
pub mod frame;
pub mod layout;
pub mod offline;
pub mod product_coupon;
pub mod reason;
pub mod request_no;
pub mod row;
pub mod scan;
pub mod state;
pub mod text;
pub mod void;
